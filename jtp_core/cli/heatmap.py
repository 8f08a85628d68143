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
    add_model_arguments(heatmap)
    heatmap.set_defaults(run=run_heatmap)


def run_heatmap(args: argparse.Namespace) -> int:
    from ..heatmaps.heatmap import parse_tag_query, tag_heatmaps  # deferred: keeps --help fast
    from ..heatmaps.render import combine_heatmaps, feather, overlay, threshold_mask
    from ..inference.images import open_image

    image = open_image(args.image)
    tagger = tagger_from_args(args)
    query = parse_tag_query(",".join(args.tag), tagger.tags)
    (result,) = tag_heatmaps(tagger, [image], query)
    heat = combine_heatmaps([result])
    out = args.out if args.out is not None or args.mask is not None else Path(f"{args.image.stem}.heatmap.png")
    if out is not None:
        shown = overlay(_as_image_tensor(image), heat, args.opacity, args.colormap)
        _save(shown[0], out)
        print(f"overlay written to {out}", file=sys.stderr)
    if args.mask is not None:
        _save(feather(threshold_mask(heat, args.threshold), args.feather)[0], args.mask)
        print(f"mask written to {args.mask}", file=sys.stderr)
    scores = {tag: round(score, 4) for tag, score in zip(result.tags, result.scores, strict=True)}
    if args.json:
        print(json.dumps(scores))
    else:
        for tag, score in scores.items():
            print(f"{tag}\t{score:.4f}")
    return 0


def _as_image_tensor(image):
    """The image as the model sees it (transparency over gray) → [1, H, W, 3] in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image
    gray = Image.new("RGBA", image.size, (128, 128, 128, 255))
    rgb = Image.alpha_composite(gray, image.convert("RGBA")).convert("RGB")
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).unsqueeze(0)


def _save(pixels, path: Path) -> None:
    """[H, W] (grayscale) or [H, W, 3] floats in [0, 1] → 8-bit PNG (or whatever the suffix says)."""
    import torch
    from PIL import Image
    array = (pixels.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
