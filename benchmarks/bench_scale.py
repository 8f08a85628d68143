"""Images/s of the dataset engines on this machine: local vs Ray with 1 and 2 tagging actors.

    .venv/bin/python benchmarks/bench_scale.py [--images 300] [--model DIR] [--num-cpus 2]

Without --model a tiny random checkpoint (the tests' layout) is written to a temporary folder, so the figures
measure the pipeline (read, decode, preprocess, transport, write) more than the model; with a real model they
measure the model. Ray's start-up is timed apart; "overhead per image" is (Ray time - local time) / images.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--model", help="model folder or name (default: a tiny random checkpoint)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--unit-size", type=int, default=50)
    args = parser.parse_args()

    from dataset_fixtures import write_folder

    from jtp_core.datasets import DatasetJob, SourceSpec
    from jtp_core.datasets.local_engine import run_local
    from jtp_core.datasets.ray_engine import connect, run_ray
    from jtp_core.tags.postprocess import TagOptions

    work = Path(tempfile.mkdtemp(prefix="jtp-bench-scale-"))
    try:
        model = args.model
        if model is None:
            from checkpoints import write_checkpoint

            write_checkpoint(work / "TINY_PILOT", "linear", 16)
            model = str(work / "TINY_PILOT")
        write_folder(work / "images", args.images, sub=False)

        def job(name: str) -> DatasetJob:
            return DatasetJob(SourceSpec((str(work / "images"),), unit_size=args.unit_size), model, work / name,
                              options=TagOptions(threshold=0.5), device="cpu")

        results = []
        local = run_local(job("local"), progress=False)
        results.append(("local (1 process, decode threads)", local.seconds, local.images))
        started = time.perf_counter()
        connect(None, num_cpus=args.num_cpus)
        ray_start = time.perf_counter() - started
        for workers in (1, 2):
            summary = run_ray(job(f"ray{workers}"), workers=workers, cpus_per_worker=args.num_cpus / (workers + 1),
                              progress=False, wave_units=1000)
            results.append((f"ray, {workers} actor(s)", summary.seconds, summary.images))
        print(f"\n{args.images} images of ~30x40 px, model {Path(model).name}, ray.init(num_cpus={args.num_cpus}) "
              f"took {ray_start:.1f} s (not counted below)")
        print(f"{'engine':38} {'seconds':>8} {'images/s':>9} {'overhead ms/img vs local':>24}")
        for name, seconds, images in results:
            overhead = (seconds - local.seconds) / max(1, images) * 1000
            print(f"{name:38} {seconds:8.1f} {images / seconds:9.1f} {overhead:24.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
