"""Command line: ``python -m jtp_core tag IMAGE_OR_DIR...``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import JTPError
from ..hub.known_models import DEFAULT_MODEL
from ..inference.choices import DEVICES, PRECISIONS
from ..tags.postprocess import ORDERS, TagOptions, parse_tag_list, tag_result
from .tag_knowledge_args import add_tag_knowledge_arguments, tag_knowledge_from_args


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL, help="model name or folder (default %(default)s)")
    group.add_argument("--models-dir", type=Path, action="append", help="where model folders live (repeatable)")
    group.add_argument("--device", default="auto", choices=DEVICES)
    group.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="auto = fp32 on the CPU; on a GPU fp16 for JTP-1, bf16 for JTP-3 / Hydra; int8 (CPU only) is faster, "
             "scores move slightly",
    )
    group.add_argument(
        "--sequence-length", type=int, default=None, metavar="N",
        help="JTP-3 / Hydra: 16x16 patches per image, 64-2048 (default 1024, as the models were made; images are "
             "never enlarged); JTP-1 ignores it",
    )
    group.add_argument("--compile", action="store_true", help="run the model through torch.compile (opt-in)")
    group.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    group.add_argument("--offline", action="store_true", help="never download; fail if the files are missing")
    parser.add_argument(
        "--max-pixels", type=_pixel_count, default=None, metavar="N",
        help="refuse images of more than N pixels (0 = no limit; also $JTP_MAX_PIXELS). Default: Pillow's "
             "decompression-bomb limits (a note above 89.5 MP, refused above 179 MP)",
    )


def _pixel_count(text: str) -> int:
    try:
        value = int(float(text.replace("_", "")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of pixels: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return value


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tag selection and formatting")
    defaults = TagOptions()
    group.add_argument(
        "--threshold", type=float, default=defaults.threshold,
        help="keep scores above this (JTP-3 / Hydra: only with --calibration off; they use calibrated thresholds)",
    )
    group.add_argument("--max-tags", type=int, default=defaults.max_tags, help="0 = no limit")
    group.add_argument("--exclude", default="", help="comma-separated tags to drop; * wildcards allowed")
    group.add_argument("--trigger", default="", help="comma-separated words written first")
    group.add_argument("--keep-underscores", action="store_true", help="write tags as e621 spells them")
    group.add_argument("--no-escape", action="store_true", help="do not escape parentheses")
    group.add_argument("--weighted", action="store_true", help="write (tag:score)")
    group.add_argument("--order", default=defaults.order, choices=ORDERS)
    group.add_argument("--separator", default=defaults.separator)
    add_tag_knowledge_arguments(parser)


def options_from_args(args: argparse.Namespace) -> TagOptions:
    return TagOptions(
        threshold=args.threshold,
        max_tags=args.max_tags,
        exclude=parse_tag_list(args.exclude),
        trigger_words=parse_tag_list(args.trigger),
        replace_underscores=not args.keep_underscores,
        escape_parentheses=not args.no_escape,
        weighted=args.weighted,
        order=args.order,
        separator=args.separator,
        **tag_knowledge_from_args(args),
    )


def tagger_from_args(args: argparse.Namespace):
    from ..hub.files import resolve_model

    # resolved before torch is imported, so a missing model or an unreachable hub is reported at once
    files = resolve_model(args.model, models_dirs=args.models_dir, download=not args.offline)
    from ..inference.tagger import load_tagger_from_files  # deferred: keeps --help fast

    return load_tagger_from_files(
        files, device=args.device, precision=args.precision, compile_model=args.compile,
        sequence_length=args.sequence_length,
    )


def run_tag(args: argparse.Namespace) -> int:
    from ..inference.images import iter_image_files

    options = options_from_args(args)
    paths = list(iter_image_files(args.images, recursive=args.recursive))
    if not paths:
        raise JTPError("no images found in " + ", ".join(args.images))
    tagger = tagger_from_args(args)
    from ..inference.batch import tag_files  # after the model is found: a missing one is reported before torch loads
    failures = 0
    for result in tag_files(tagger, paths, batch_size=args.batch_size, fast_jpeg=args.fast_jpeg):
        if result.error is not None:
            failures += 1
            print(f"error: {result.path}: {result.error}", file=sys.stderr)
            continue
        tagged = tag_result(result.probs, tagger.labels, options)
        if args.json:
            record = {"path": str(result.path), "tags": tagged.text, "scores": tagged.scores}
            if tagger.labels.rules == "jtp3":  # JTP-3's own tools show 2p - 1: give it for comparison
                from ..tags.calibration import to_symmetric

                record["symmetric_scores"] = {tag: round(to_symmetric(p), 4) for tag, p in tagged.scores.items()}
            print(json.dumps(record), flush=True)
        elif len(paths) == 1:
            print(tagged.text, flush=True)
        else:
            print(f"{result.path}\t{tagged.text}", flush=True)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jtp_core", description="RedRocket JTP e621 image tagger")
    commands = parser.add_subparsers(dest="command", required=True)
    tag = commands.add_parser("tag", help="print the tags of images")
    tag.add_argument("images", nargs="+", help="image files or folders")
    tag.add_argument("--recursive", action="store_true", help="look into subfolders of folders")
    tag.add_argument("--json", action="store_true", help="one JSON object per image: path, tags, scores")
    tag.add_argument(
        "--fast-jpeg", action="store_true",
        help="decode JPEGs at reduced scale (draft mode): faster, scores differ slightly from the reference",
    )
    add_model_arguments(tag)
    add_format_arguments(tag)
    tag.set_defaults(run=run_tag)
    from .caption import add_caption_command  # here, not at the top: caption_cli imports this module

    add_caption_command(commands)
    from .heatmap import add_heatmap_command  # same reason as caption_cli

    add_heatmap_command(commands)
    from .dataset import add_dataset_commands  # dataset caption/export, review

    add_dataset_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from ..inference.images import set_max_pixels

        set_max_pixels(getattr(args, "max_pixels", None))  # None: $JTP_MAX_PIXELS or Pillow's limits
        return args.run(args)
    except (JTPError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. an output path in a missing or read-only folder
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
