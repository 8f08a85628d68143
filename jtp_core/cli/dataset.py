"""``python -m jtp_core dataset caption|export`` and ``python -m jtp_core review``: datasets beyond one folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .main import add_format_arguments, add_model_arguments, options_from_args

EXPORT_FORMATS = ("txt", "kohya", "simpletuner", "hf", "webdataset")


def add_dataset_commands(commands) -> None:
    dataset = commands.add_parser(
        "dataset", help="caption datasets (folders, list files, WebDataset shards, Parquet) locally or with Ray",
        description="Caption a dataset into a Parquet result (resumable), then export it for a trainer.",
    )
    sub = dataset.add_subparsers(dest="dataset_command", required=True)
    caption = sub.add_parser("caption", help="caption a dataset into OUTPUT (rerun the same command to resume)")
    caption.add_argument("sources", nargs="+", help="folders, list files, .tar shards, .parquet files (globs allowed)")
    caption.add_argument("--output", "-o", type=Path, required=True, help="the job folder (result + manifest)")
    caption.add_argument("--source-kind", default="auto", choices=("auto", "folder", "list", "webdataset", "parquet"))
    caption.add_argument("--no-recursive", action="store_true", help="do not look into subfolders of folders")
    caption.add_argument("--unit-size", type=int, default=1000, help="images per resumable unit of a folder/list")
    caption.add_argument("--image-column", help="Parquet: the column with image bytes")
    caption.add_argument("--path-column", help="Parquet: the column with image paths")
    caption.add_argument("--key-column", help="Parquet: a unique id column (default: key, if present)")
    caption.add_argument("--image-members", default="jpg,jpeg,png,webp", help="WebDataset: image member extensions")
    caption.add_argument(
        "--merge-with", metavar="SPEC",
        help="supplement existing captions instead of replacing them: txt (beside images / a shard's txt member), "
             "column:NAME (Parquet), member:EXT or member:json:FIELD (shards)",
    )
    caption.add_argument("--drop-implied", action="store_true", help="merge: drop model tags a human tag implies")
    caption.add_argument("--aliases", help="merge: e621 tag_aliases CSV for alias-insensitive matching")
    caption.add_argument("--near-margin", type=float, default=0.1, help="record tags this far below the threshold")
    caption.add_argument("--engine", default="local", choices=("local", "ray"), help="default: local (no Ray needed)")
    caption.add_argument("--address", help="Ray: cluster address (auto = the local `ray start --head` cluster)")
    caption.add_argument("--num-cpus", type=int, help="Ray without --address: CPUs of the local instance")
    caption.add_argument("--ray-workers", type=int, help="Ray: tagging actors (default: one per GPU, else 1)")
    caption.add_argument("--cpus-per-worker", type=float, help="Ray: CPUs reserved by each tagging actor")
    caption.add_argument("--wave-units", type=int, default=16, help="Ray: units per committed wave")
    caption.add_argument("--workers", type=int, help="local: decode threads")
    caption.add_argument("--fast-jpeg", action="store_true", help="decode JPEGs in draft mode (scores move slightly)")
    caption.add_argument("--restart", action="store_true", help="discard the result in OUTPUT and start over")
    caption.add_argument("--no-progress", action="store_true")
    add_model_arguments(caption)
    add_format_arguments(caption)
    caption.set_defaults(run=run_dataset_caption)

    export = sub.add_parser("export", help="export a captioning result for a trainer")
    export.add_argument("result", type=Path, help="the job folder of `dataset caption`")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument("--to", type=Path, help="output file/folder (kohya/simpletuner/hf/webdataset; see README)")
    export.add_argument("--mode", default="skip", choices=("skip", "overwrite", "append", "prepend"),
                        help="txt: when a caption file exists")
    export.add_argument("--caption-extension", default=".txt")
    export.add_argument("--full-path", action="store_true", help="kohya: key by full path (as its --full_path)")
    export.add_argument("--member", default="jtp", help="webdataset: added members are KEY.<member>.txt/.json")
    export.set_defaults(run=run_dataset_export)

    review = commands.add_parser("review", help="write an HTML contact sheet of a diverse sample of a result")
    review.add_argument("result", type=Path, help="the job folder of `dataset caption`")
    review.add_argument("--count", "-n", type=int, default=48, help="images in the sample")
    review.add_argument("--html", type=Path, help="where to write it (default RESULT/review.html)")
    review.add_argument("--thumb", type=int, default=160, help="thumbnail size in pixels")
    review.add_argument("--seed", type=int, default=0)
    review.set_defaults(run=run_review)


def run_dataset_caption(args: argparse.Namespace) -> int:
    from ..datasets.job import DatasetJob, MergeSpec, SourceSpec

    source = SourceSpec(
        paths=tuple(args.sources), kind=args.source_kind, recursive=not args.no_recursive, unit_size=args.unit_size,
        image_column=args.image_column, path_column=args.path_column, key_column=args.key_column,
        image_members=tuple(part.strip() for part in args.image_members.split(",") if part.strip()),
    )
    job = DatasetJob(
        source=source, model=args.model, output=args.output, options=options_from_args(args),
        merge=MergeSpec(existing=args.merge_with, drop_implied=args.drop_implied, aliases=args.aliases),
        near_margin=args.near_margin, device=args.device, precision=args.precision, batch_size=args.batch_size,
        workers=args.workers, fast_jpeg=args.fast_jpeg, models_dirs=args.models_dir, download=not args.offline,
    )
    try:
        if args.engine == "ray":
            from ..datasets.ray_engine import run_ray

            summary = run_ray(
                job, address=args.address, num_cpus=args.num_cpus, workers=args.ray_workers,
                cpus_per_worker=args.cpus_per_worker, wave_units=args.wave_units, progress=not args.no_progress,
                restart=args.restart,
            )
        else:
            from ..datasets.local_engine import run_local

            summary = run_local(job, progress=not args.no_progress, restart=args.restart)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the units finished are kept in {args.output}. Run the same command again to resume.",
              file=sys.stderr)
        return 130
    print(summary.to_text())
    return 1 if summary.errors else 0


def run_dataset_export(args: argparse.Namespace) -> int:
    from ..datasets import exporters

    result = exporters.export(args.result, args.format, args.to, mode=args.mode,
                              caption_extension=args.caption_extension, full_path=args.full_path, member=args.member)
    print(result)
    return 0


def run_review(args: argparse.Namespace) -> int:
    from ..datasets.review import write_review

    html = args.html or args.result / "review.html"
    count = write_review(args.result, html, count=args.count, thumb=args.thumb, seed=args.seed)
    print(f"wrote {html} ({count} images)")
    return 0
