"""``python -m jtp_core caption DIR...``: caption folders for LoRA training, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..captioning.caption_files import MODES
from ..errors import JTPError
from ..inference.images import IMAGE_EXTENSIONS
from .main import add_format_arguments, add_model_arguments, options_from_args, tagger_from_args

FAST_JPEG_HELP = (
    "decode JPEGs at reduced scale (libjpeg draft mode, never below the size the model needs): several times "
    "faster to decode, but scores differ slightly from the reference preprocessing"
)


def add_caption_command(commands) -> None:
    """Register the ``caption`` subcommand on the subparsers of the main parser."""
    caption = commands.add_parser(
        "caption",
        help="write a caption file beside each image (for LoRA training)",
        description="Write foo.txt beside foo.png for every image. An interrupted run resumes, in every mode, when "
                    "the same command is run again (a hidden .jtp-caption-job.jsonl beside the captions records the "
                    "job; it is removed when the job completes).",
    )
    caption.add_argument("inputs", nargs="+", type=Path, help="image folders and/or files")
    caption.add_argument("--recursive", "-r", action="store_true", help="look into subfolders")
    caption.add_argument(
        "--mode", default="skip", choices=MODES,
        help="when a caption exists: skip it (default; makes runs resumable), overwrite it, or add the tags it "
             "lacks after (append) or before (prepend) its text",
    )
    caption.add_argument(
        "--output", type=Path,
        help="write captions here, mirroring the input folder's tree; with several inputs, each input gets a "
             "folder here named after it (OUT/a/x.txt, OUT/b/x.txt)",
    )
    caption.add_argument(
        "--ext", default=",".join(IMAGE_EXTENSIONS), help="image extensions to caption, comma-separated",
    )
    caption.add_argument("--caption-extension", default=".txt", help="caption file extension (default %(default)s)")
    caption.add_argument(
        "--sidecar-floor", type=float, default=None, metavar="SCORE",
        help="also write <name>.jtp.json with every tag scoring above SCORE (to re-threshold later)",
    )
    caption.add_argument("--report", type=Path, help="write the run's summary as JSON here")
    caption.add_argument("--workers", type=int, default=None, help="decode threads (default: one per core, up to 8)")
    caption.add_argument("--fast-jpeg", action="store_true", help=FAST_JPEG_HELP)
    caption.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(caption)
    add_format_arguments(caption)
    caption.set_defaults(run=run_caption)


def run_caption(args: argparse.Namespace) -> int:
    from ..captioning.caption import CaptionRequest, plan_captions, run_plan  # deferred: keeps --help fast
    from ..captioning.job_record import model_identity

    request = CaptionRequest(
        inputs=args.inputs,
        recursive=args.recursive,
        extensions=tuple(ext.strip() for ext in args.ext.split(",") if ext.strip()),
        output_dir=args.output,
        mode=args.mode,
        options=options_from_args(args),
        caption_extension=args.caption_extension,
        sidecar_floor=args.sidecar_floor,
        report_path=args.report,
        batch_size=args.batch_size,
        workers=args.workers,
        fast_jpeg=args.fast_jpeg,
        model_id=model_identity(args.model, args.precision, args.device),
    )
    plan = plan_captions(request)  # also checks every output folder: before the model is loaded
    if not plan.total:
        raise JTPError("no images found in " + ", ".join(str(path) for path in args.inputs))
    for note in plan.notes:
        print(note, file=sys.stderr)
    tagger = tagger_from_args(args) if plan.jobs else None  # nothing to do: no need to load the model
    bar = ProgressBar(len(plan.jobs), disable=args.no_progress or not plan.jobs)
    try:
        summary = run_plan(tagger, request, plan, on_progress=bar)
    except KeyboardInterrupt:
        bar.close()
        left = len(plan.jobs) - bar.done
        print(f"\ninterrupted after {bar.done} of {len(plan.jobs)} images; the captions written are complete. "
              f"Run the same command again to caption the {left} left (the job is resumed in every mode).",
              file=sys.stderr)
        return 130
    bar.close()
    print(summary.to_text())
    return 1 if summary.failed else 0


class ProgressBar:
    """A tqdm bar on stderr that works as the core's progress callback."""

    def __init__(self, total: int, disable: bool) -> None:
        from tqdm import tqdm

        self.done = 0
        self._bar = tqdm(total=total, unit="img", desc="captioning", file=sys.stderr, disable=disable, smoothing=0.1)

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self._bar.close()
