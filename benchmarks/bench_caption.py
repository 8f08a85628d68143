"""Folder captioning throughput: the streaming pipeline against a plain one-image-at-a-time loop.

Generates a folder of photo-like JPEG/PNG images of 1–4 MP, then captions it with a tiny JTP-layout model
(so decoding and preprocessing, not the model, are what is measured), both ways, in the same run:

    .venv/bin/python benchmarks/bench_caption.py                 # 200 images, ~2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_caption.py --count 50 --workers 1 2 4
    .venv/bin/python benchmarks/bench_caption.py --fast-jpeg --real-size 4   # + the opt-in fast JPEG mode

--fast-jpeg adds, on the folder's JPEGs: decode+preprocess time per image (one thread) and captioning images/s
with and without fast_jpeg, and the max |score difference| and top-10 agreement between the two decodes
with the tiny model; --real-size N measures the score difference on N images with the real-size
architecture (random weights, no download; ~6 s per image per pass on a 2-core CPU).

Both ways write the same captions with the same atomic writer; the benchmark checks they agree. "cores busy"
(CPU time / wall time of this process) tells whether the machine had cores to spare: on a shared machine the
parallel decode can only go as fast as the cores it gets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from checkpoints import write_checkpoint  # noqa: E402

from jtp_core import TagOptions, load_tagger, tag_result  # noqa: E402
from jtp_core.captioning.caption import CaptionRequest, caption_images  # noqa: E402
from jtp_core.captioning.caption_files import caption_path, write_caption  # noqa: E402
from jtp_core.families.pilot.fast_jpeg import preprocess_file  # noqa: E402
from jtp_core.families.pilot.preprocess import preprocess_pil  # noqa: E402
from jtp_core.inference.images import iter_image_files, open_image  # noqa: E402


def generate(folder: Path, count: int, min_mp: float, max_mp: float, seed: int = 0) -> int:
    """Smooth gradients plus blotches plus grain: compresses and decodes like photos, unlike pure noise."""
    rng = np.random.default_rng(seed)
    total = 0
    for index in range(count):
        pixels = rng.uniform(min_mp, max_mp) * 1e6
        aspect = rng.choice([1.0, 4 / 3, 3 / 4, 16 / 9, 9 / 16, 2 / 3])
        width, height = int((pixels * aspect) ** 0.5), int((pixels / aspect) ** 0.5)
        coarse = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        grain = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
        array = np.clip(np.asarray(image, np.int16) + grain, 0, 255).astype(np.uint8)
        path = folder / (f"{index:04d}.jpg" if index % 2 else f"{index:04d}.png")
        if path.suffix == ".jpg":
            Image.fromarray(array).save(path, quality=90)
        else:
            Image.fromarray(array).save(path, compress_level=1)
        total += width * height
    return total


def plain_loop(tagger, images: list[Path], output: Path, options: TagOptions) -> tuple[float, float]:
    """What people glue together today: open, preprocess, one forward, write; one image at a time.

    Returns (wall seconds, CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    for path in images:
        pixels = preprocess_pil(open_image(path), tagger.preprocessor.size)
        probs = tagger.predict({"pixels": pixels.unsqueeze(0)}, batch_size=1)[0]
        target = caption_path(path, path.parent, output)
        write_caption(target, tag_result(probs, tagger.tags, options).text, mode="overwrite")
    return time.perf_counter() - started, time.process_time() - cpu


def decode_seconds(images: list[Path], size: int, fast_jpeg: bool, repeat: int = 2) -> float:
    """Seconds per image to decode and preprocess, in this thread (the best of ``repeat`` passes)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for path in images:
            preprocess_file(path, size, fast_jpeg)
        best = min(best, time.perf_counter() - started)
    return best / len(images)


def score_difference(tagger, images: list[Path], k: int = 10) -> tuple[float, float, float]:
    """(max |score difference|, mean top-k overlap, top-1 agreement) between the exact and the fast decode."""
    import torch

    exact = torch.stack([preprocess_file(path, tagger.preprocessor.size) for path in images])
    fast = torch.stack([preprocess_file(path, tagger.preprocessor.size, fast_jpeg=True) for path in images])
    probs_exact = tagger.predict({"pixels": exact}, batch_size=len(images))
    probs_fast = tagger.predict({"pixels": fast}, batch_size=len(images))
    k = min(k, probs_exact.shape[1])
    top_exact, top_fast = probs_exact.topk(k).indices, probs_fast.topk(k).indices
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top_exact, top_fast, strict=True))
    top1 = float((top_exact[:, 0] == top_fast[:, 0]).float().mean())
    return float((probs_exact - probs_fast).abs().max()), overlap / len(images), top1


def real_size_tagger(seed: int = 0):
    """The real JTP architecture with random weights, its head spread so scores look like a tagger's."""
    import torch

    from jtp_core.families.base import Labels
    from jtp_core.families.pilot import PILOT, PilotPreprocessor
    from jtp_core.families.pilot.architecture import VitConfig, build_model
    from jtp_core.inference.tagger import Tagger

    torch.manual_seed(seed)
    num_tags = 9083
    model = build_model(VitConfig(), "linear", num_tags).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0 / model.head.weight.shape[1] ** 0.5)
        model.head.bias.normal_(-1.5, 1.0)
    labels = Labels([f"tag_{index}" for index in range(num_tags)])
    return Tagger(model, labels, PILOT, PilotPreprocessor(), variant="linear", name="random")


def compare_fast_jpeg(tagger, images: list[Path], work: Path, options: TagOptions, args) -> None:
    jpegs = [path for path in images if path.suffix.lower() in (".jpg", ".jpeg")]
    if not jpegs:
        print("fast JPEG: no JPEGs in the folder")
        return
    print(f"\nfast JPEG (draft mode, opt-in) on {len(jpegs)} JPEGs of the folder:")
    exact_s, fast_s = (decode_seconds(jpegs, tagger.preprocessor.size, fast) for fast in (False, True))
    print(f"  decode+preprocess, 1 thread: exact {exact_s * 1e3:6.1f} ms/image, fast {fast_s * 1e3:6.1f} ms/image "
          f"({exact_s / fast_s:.2f}x)")
    rates = {}
    for fast in (False, True):
        request = CaptionRequest(jpegs, output_dir=work / f"fast-{fast}", mode="overwrite", options=options,
                                 batch_size=args.batch_size, workers=args.workers[0], fast_jpeg=fast)
        summary = caption_images(tagger, request)
        rates[fast] = summary.images_per_second
        label = "with --fast-jpeg   " if fast else "without --fast-jpeg"
        print(f"  streaming {label}: {summary.images_per_second:6.2f} images/s ({summary.seconds:.1f} s)")
    print(f"  speed-up of the whole captioning run: {rates[True] / rates[False]:.2f}x")
    worst, overlap, top1 = score_difference(tagger, jpegs)
    print(f"  tiny model ({len(tagger.tags)} tags): max |score diff| {worst:.4f}, top-10 overlap {overlap:.3f}, "
          f"top-1 agreement {top1:.3f}")
    if args.real_size:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        few = jpegs[: args.real_size]
        started = time.perf_counter()
        worst, overlap, top1 = score_difference(real_size_tagger(), few)
        print(f"  real-size architecture, random weights, {len(few)} images: max |score diff| {worst:.4f}, "
              f"top-10 overlap {overlap:.3f}, top-1 agreement {top1:.3f} ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--min-mp", type=float, default=1.0)
    parser.add_argument("--max-mp", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=None, help="streaming batch size (default: device's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[None], help="decode threads to try (default auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch threads for the model (default 1: the tiny model then takes a few ms per batch; with more "
             "threads on a busy machine, thread synchronisation can cost more than the model and hide what is "
             "measured)",
    )
    parser.add_argument("--folder", type=Path, help="reuse or keep the generated images here")
    parser.add_argument("--fast-jpeg", action="store_true", help="also measure the opt-in fast JPEG decode")
    parser.add_argument("--real-size", type=int, default=0, metavar="N",
                        help="with --fast-jpeg: score difference on N images with the real-size architecture")
    parser.add_argument("--skip-plain", action="store_true", help="skip the plain loop and the streaming runs")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        folder = args.folder or work / "images"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if len(list(folder.glob("*.*"))) < args.count:
            megapixels = generate(folder, args.count, args.min_mp, args.max_mp) / 1e6
            elapsed = time.perf_counter() - started
            print(f"generated {args.count} images, {megapixels:.0f} MP in all, in {elapsed:.1f} s")
        images = list(iter_image_files([folder]))[: args.count]
        write_checkpoint(work / "TINY", "linear", 64)
        tagger = load_tagger(work / "TINY", device=args.device)
        options = TagOptions(threshold=0.0, max_tags=10)
        print(f"{len(images)} images, tiny model on {tagger.device}, torch threads {torch.get_num_threads()}")

        if args.fast_jpeg and args.skip_plain:
            compare_fast_jpeg(tagger, images, work, options, args)
            return
        seconds, cpu = plain_loop(tagger, images, work / "plain", options)
        print(f"plain one-at-a-time loop : {len(images) / seconds:6.2f} images/s ({seconds:.1f} s, "
              f"{cpu / seconds:.2f} cores busy)")
        for workers in args.workers:
            out = work / f"stream-{workers}"
            request = CaptionRequest(images, output_dir=out, mode="overwrite", options=options,
                                     batch_size=args.batch_size, workers=workers)
            cpu = time.process_time()
            summary = caption_images(tagger, request)
            cores = (time.process_time() - cpu) / summary.seconds
            label = "auto" if workers is None else str(workers)
            print(f"streaming, workers={label:4s}: {summary.images_per_second:6.2f} images/s "
                  f"({summary.seconds:.1f} s, {summary.images_per_second * seconds / len(images):.2f}x, "
                  f"{cores:.2f} cores busy)")
            mismatched = [p.name for p in images if (out / f"{p.stem}.txt").read_text()
                          != (work / "plain" / f"{p.stem}.txt").read_text()]
            if summary.failed or mismatched:
                print(f"  ! failed {summary.failed}, captions differing from the plain loop: {mismatched[:5]}")
        if args.fast_jpeg:
            compare_fast_jpeg(tagger, images, work, options, args)


if __name__ == "__main__":
    main()
