"""NaFlex preprocessing speed for JTP-3 Hydra (Pillow) and Hydra 3.5 (libvips port, and pyvips when installed).

Writes photo-like JPEGs of 1-4 MP (and one RGBA PNG), then times file -> model input (decode, ICC, resize,
patch packing) per image, one thread of Python (torch may use its intra-op threads):

    .venv/bin/python benchmarks/bench_hydra_preprocess.py               # 4 sizes x 3 repeats
    .venv/bin/python benchmarks/bench_hydra_preprocess.py --repeats 5 --max-seq 1024 --threads 1

Rows: pillow = JTP-3 release pipeline; vips-port/<resize> = the built-in exact libvips port; pyvips/<resize> =
RedRocket's own libvips calls (if ``pip install pyvips pyvips-binary`` was done), with a check that the port
gave the same bytes. The median of the repeats is reported; the machine's load shows in "load".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jtp_core.families.hydra.preprocess import NaFlexPreprocessor  # noqa: E402

SIZES = [(1000, 1000), (1920, 1080), (2400, 1600), (2304, 1728)]  # ~1, 2, 3.8, 4 MP (w x h)


def photo(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, channels, height // 64 + 2, width // 64 + 2)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")[0].permute(1, 2, 0).numpy()
    return np.clip(field + rng.normal(0, 6, field.shape), 0, 255).astype(np.uint8)


def write_images(folder: Path) -> list[Path]:
    paths = []
    for i, (w, h) in enumerate(SIZES):
        path = folder / f"photo_{w}x{h}.jpg"
        Image.fromarray(photo(w, h, i)).save(path, quality=90)
        paths.append(path)
    path = folder / "rgba_1600x1200.png"
    Image.fromarray(photo(1600, 1200, 99, channels=4)).save(path)
    paths.append(path)
    return paths


def time_it(fn, repeats: int) -> tuple[float, object]:
    result, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seq", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    variants: dict[str, NaFlexPreprocessor] = {
        "pillow": NaFlexPreprocessor(args.max_seq, "pillow"),
        "vips-port/mks2013-linear": NaFlexPreprocessor(args.max_seq, "vips", resize="mks2013-linear"),
        "vips-port/lanczos": NaFlexPreprocessor(args.max_seq, "vips", resize="lanczos"),
        "vips-port/mks+fast_jpeg": NaFlexPreprocessor(args.max_seq, "vips", resize="mks2013-linear"),
    }
    try:
        variants["pyvips/mks2013-linear"] = NaFlexPreprocessor(
            args.max_seq, "vips", resize="mks2013-linear", backend="pyvips"
        )
        variants["pyvips/lanczos"] = NaFlexPreprocessor(args.max_seq, "vips", resize="lanczos", backend="pyvips")
    except ImportError as error:
        print(f"(pyvips rows skipped: {error})")

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp))
        names = [p.name.split(".")[0].split("_", 1)[1] for p in paths]
        print(f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}, max_seq {args.max_seq}")
        print(f"{'ms / image':26}" + "".join(f"{n:>12}" for n in names) + f"{'mean':>10}")
        outputs: dict[str, list] = {}
        for label, pre in variants.items():
            fast = label.endswith("fast_jpeg")
            row, outputs[label] = [], []
            for path in paths:
                ms, out = time_it(
                    lambda pre=pre, path=path, fast=fast: pre.from_file(path, fast_jpeg=fast), args.repeats
                )
                row.append(ms)
                outputs[label].append(out)
            print(f"{label:26}" + "".join(f"{ms:12.0f}" for ms in row) + f"{statistics.mean(row):10.0f}")
        for resize in ("mks2013-linear", "lanczos"):
            if f"pyvips/{resize}" in outputs:
                same = all(
                    torch.equal(a["patches"], b["patches"])
                    for a, b in zip(outputs[f"vips-port/{resize}"], outputs[f"pyvips/{resize}"], strict=True)
                )
                print(f"port == pyvips ({resize}): {same}")


if __name__ == "__main__":
    main()
