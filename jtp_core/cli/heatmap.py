"""``python -m jtp_core heatmap IMAGE --tag TAG [--out overlay.png] [--mask mask.png]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..heatmaps.colormaps import COLORMAPS
from .main import add_model_arguments, tagger_from_args


def add_heatmap_command(commands) -> None:
    """Register the ``heatmap`` subcommand on the subparsers of the main parser."""
    heatmap = commands.add_parser(
        "heatmap",
        help="show where in an image a tag comes from; write an overlay and/or a mask PNG",
        description="Grad-CAM heatmap of one or more tags, as a colored overlay and as a grayscale mask "
                    "(white = the tag is here) the size of the image, e.g. for inpainting.",
    )
    heatmap.add_argument("image", type=Path, help="an image file")
    heatmap.add_argument(
        "--tag", action="append", required=True,
        help="tag(s) to locate, comma-separated, spaces or underscores ('red hat'); 'top N' = the N highest "
             "scoring; repeatable. The mask is the union.",
    )
    heatmap.add_argument("--out", type=Path, help="overlay PNG (default: <image name>.heatmap.png here, "
                                                  "unless only --mask is given)")
    heatmap.add_argument("--mask", type=Path, help="grayscale mask PNG the size of the image")
    heatmap.add_argument("--opacity", type=float, default=0.5, help="overlay opacity (default %(default)s)")
    heatmap.add_argument("--colormap", default="jet", choices=list(COLORMAPS))
    heatmap.add_argument("--threshold", type=float, default=0.0,
                         help="mask = 1 where the heat is at least this; 0 keeps the soft heat (default)")
    heatmap.add_argument("--feather", type=int, default=0, help="blur the mask over this many pixels")
    heatmap.add_argument("--json", action="store_true", help="print {tag: score} as JSON")
    heatmap.add_argument(
        "--method", default="auto", choices=("auto", "attention"),
        help="auto: each model's CAM (JTP-1 Grad-CAM; JTP-3 / Hydra RedRocket's multi-layer CAM); attention: the "
             "Hydra pool's per-tag attention, one pass (JTP-3 / Hydra only)",
    )
    heatmap.add_argument(
        "--cam-layers", type=int, default=1, metavar="N",
        help="JTP-3 / Hydra CAM: sum over the last N blocks (default %(default)s, as RedRocket's demo)",
    )
    add_model_arguments(heatmap)
    heatmap.set_defaults(run=run_heatmap)


def run_heatmap(args: argparse.Namespace) -> int:
    from ..captioning.outputs import check_output_files
    from ..inference.images import open_image

    image = open_image(args.image)
    out = args.out if args.out is not None or args.mask is not None else Path(f"{args.image.stem}.heatmap.png")
    check_output_files([out], "the overlay")  # before the model is loaded, not after the overlay is written
    check_output_files([args.mask], "the mask")
    tagger = tagger_from_args(args)
    from ..heatmaps.heatmap import parse_tag_query, tag_heatmaps  # deferred: keeps --help fast
    from ..heatmaps.render import render_mask_uint8, render_overlay_uint8

    query = parse_tag_query(",".join(args.tag), tagger.tags)
    # maps in the image's display (EXIF) orientation
    (result,) = tag_heatmaps(tagger, [image], query, method=args.method, layers=args.cam_layers)
    if out is not None:
        shown = render_overlay_uint8(_displayed_rgb(image), result, args.opacity, args.colormap)
        _save(shown, out)
        del shown
        print(f"overlay written to {out}", file=sys.stderr)
    if args.mask is not None:
        _save(render_mask_uint8(result, args.threshold, args.feather), args.mask)
        print(f"mask written to {args.mask}", file=sys.stderr)
    scores = {tag: round(score, 4) for tag, score in zip(result.tags, result.scores, strict=True)}
    if args.json:
        print(json.dumps(scores))
    else:
        for tag, score in scores.items():
            print(f"{tag}\t{score:.4f}")
    return 0


def _displayed_rgb(image):
    """The image as viewers show it (EXIF orientation applied), transparency over gray as the model sees it
    → uint8 [H, W, 3]. Only 8-bit copies of the image: no float32 image."""
    import numpy as np
    from PIL import Image, ImageOps

    from ..heatmaps.mapping import exif_orientation

    if exif_orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        gray = Image.new("RGBA", image.size, (128, 128, 128, 255))
        image = Image.alpha_composite(gray, image.convert("RGBA"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _save(array, path: Path) -> None:
    """uint8 [H, W] (grayscale) or [H, W, 3] → PNG (or whatever the suffix says)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
