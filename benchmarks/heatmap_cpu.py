"""Time a tag heatmap against plain tagging on the real-size architecture (random weights, CPU, fp32).

    .venv/bin/python benchmarks/heatmap_cpu.py [--images 4] [--tags 3]

No checkpoint needed: the figures are about cost (the backbone runs once without gradients; only the
attention-pool head runs with them), not about what the maps show.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jtp_core.families.base import Labels  # noqa: E402
from jtp_core.families.pilot import PILOT, PilotPreprocessor  # noqa: E402
from jtp_core.families.pilot.architecture import SO400M, build_model  # noqa: E402
from jtp_core.heatmaps.heatmap import tag_heatmaps  # noqa: E402
from jtp_core.inference.tagger import Tagger  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tags", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(SO400M, "linear", 9083, device="cpu").requires_grad_(False)
    tagger = Tagger(model, Labels([f"tag_{i}" for i in range(9083)]), PILOT, PilotPreprocessor(), variant="linear")
    images = [Image.new("RGB", (1024, 768), (i * 40 % 255, 90, 160)) for i in range(args.images)]
    with torch.inference_mode():
        tagger.predict_pils(images[:1])  # warm-up
        start = time.perf_counter()
        tagger.predict_pils(images, batch_size=args.images)
        tag_s = time.perf_counter() - start
        start = time.perf_counter()
        results = tag_heatmaps(tagger, images, f"top {args.tags}", batch_size=args.images)
        heat_s = time.perf_counter() - start
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.images} images 1024x768, fp32 CPU")
    print(f"tagging:  {tag_s:.2f} s   heatmaps of {args.tags} tags: {heat_s:.2f} s   ratio {heat_s / tag_s:.2f}")
    print(f"map shape {tuple(results[0].maps.shape)}, range [{results[0].maps.min():.2f}, {results[0].maps.max():.2f}]")


if __name__ == "__main__":
    main()
