"""Throughput and peak memory: the reference loop against the project's path, in one run, on one machine.

The reference loop is what RedRocket's demo app and its peers do: one image per forward pass, Pillow
preprocessing inline, a plain timm model plus sigmoid in fp32 (fp16 on a GPU). The project's path loads
through jtp_core (safetensors → Tagger), decodes ahead of the model and runs batches, in each precision
worth comparing. Weights are random (the real-size architecture from jtp_core.families.pilot.architecture, nothing is
downloaded) unless --checkpoint points at a model folder; images are synthetic 1-4 MP JPEGs.

Every mode lives in its own process (so its peak memory is its own) and the modes take turns on the same
groups of images, round after round, so that load from anything else on the machine falls on all of them
alike. Figures, not tests:

    python benchmarks/bench_tagger.py --tiny                 # seconds: checks the plumbing
    python benchmarks/bench_tagger.py --images 8             # real size on a CPU: a few minutes
    python benchmarks/bench_tagger.py --images 512 --peak-tflops 989   # one H100
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jtp_core.families.pilot.architecture import SO400M, TIMM_NAME, VitConfig, build_model  # noqa: E402

GFLOP_PER_IMAGE = 670.0  # So400m at 384²: ≈ 335 GMAC per image
TINY = VitConfig(embed_dim=72, depth=2, num_heads=1, mlp_hidden=144)
NUM_TAGS = 9083
IMAGE_SIZES = [(1600, 1200), (1200, 1600), (2048, 1536), (1920, 1080), (2304, 1728), (1024, 1024), (1080, 1920)]
# dense bf16 tensor-core peaks from the vendors' spec sheets, TFLOP/s (override with --peak-tflops)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


@dataclass(frozen=True)
class Mode:
    label: str
    worker: str  # "reference" or a jtp_core precision: fp32, fp16, bf16, int8 (+ "+compile")
    batch_size: int


# ---------------------------------------------------------------------------------------------- workers


def _reference_input(path: Path) -> torch.Tensor:
    """The reference app's preprocessing, written out plainly (no jtp_core)."""
    image = Image.open(path).convert("RGBA")
    width, height = image.size
    scale = min(384 / height, 384 / width)
    if scale != 1:
        image = image.resize((min(round(width * scale), 384), min(round(height * scale), 384)), Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    rgb = pixels[:3] * pixels[3:] + (1 - pixels[3:]) * 0.5
    rgb = (rgb - 0.5) / 0.5
    pad_h, pad_w = 384 - rgb.shape[1], 384 - rgb.shape[2]
    return torch.nn.functional.pad(rgb, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class ReferenceRunner:
    def __init__(self, model_dir: Path, device: torch.device, config: VitConfig) -> None:
        import timm
        from safetensors.torch import load_file

        self.device = device
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        model = timm.create_model(
            TIMM_NAME, pretrained=False, num_classes=NUM_TAGS, embed_dim=config.embed_dim, depth=config.depth,
            num_heads=config.num_heads, mlp_ratio=(config.mlp_hidden + 0.5) / config.embed_dim,
        )
        model.load_state_dict(load_file(str(next(model_dir.glob("*.safetensors")))))
        self.model = model.eval().to(device, self.dtype)

    def run(self, paths: list[Path], batch_size: int) -> torch.Tensor:
        rows = []
        with torch.no_grad():
            for path in paths:  # one image per forward, preprocessing inline
                pixels = _reference_input(path).unsqueeze(0).to(self.device, self.dtype)
                rows.append(torch.sigmoid(self.model(pixels)).float().cpu())
        return torch.cat(rows)


class ProjectRunner:
    def __init__(self, model_dir: Path, device: torch.device, precision: str) -> None:
        from jtp_core import load_tagger

        precision, _, extra = precision.partition("+")
        self.tagger = load_tagger(model_dir, device=device, precision=precision, compile_model=extra == "compile")

    def run(self, paths: list[Path], batch_size: int) -> torch.Tensor:
        try:
            from jtp_core.inference.streaming import load_model_input, stream_batches
        except ImportError:  # the threaded decoder is another module's; fall back to decoding in this thread
            from jtp_core.inference.images import open_image

            return self.tagger.predict_pils((open_image(path) for path in paths), batch_size=batch_size)
        preprocessor = self.tagger.preprocessor
        rows = [
            self.tagger.predict(batch.inputs, batch_size=batch_size)
            for batch in stream_batches(paths, lambda path: load_model_input(path, preprocessor), batch_size)
        ]
        return torch.cat(rows)


def _worker(connection, kind: str, model_dir: str, device: str, config: VitConfig, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    target = torch.device(device)
    started = time.perf_counter()
    if kind == "reference":
        runner = ReferenceRunner(Path(model_dir), target, config)
    else:
        runner = ProjectRunner(Path(model_dir), target, kind)
    connection.send(("ready", time.perf_counter() - started))
    _reset_peak_memory(target)  # from here on: weights + inference, not the load's transient copies
    while True:
        command, paths, batch_size = connection.recv()
        if command == "stop":
            connection.send(("peak", _peak_memory(target)))
            return
        _sync(target)
        started = time.perf_counter()
        probs = runner.run([Path(path) for path in paths], batch_size)
        _sync(target)
        connection.send(("done", (time.perf_counter() - started, probs.numpy())))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: writing 5 resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory(device: torch.device) -> int:
    """Bytes: torch.cuda.max_memory_allocated on a GPU, peak RSS of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Worker:
    def __init__(self, kind: str, model_dir: Path, device: str, config: VitConfig, threads: int | None) -> None:
        context = mp.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker, args=(child, kind, str(model_dir), device, config, threads), daemon=True
        )
        self.process.start()
        self.load_seconds = self._receive("ready")

    def run(self, paths: list[Path], batch_size: int) -> tuple[float, np.ndarray]:
        self.connection.send(("run", [str(path) for path in paths], batch_size))
        return self._receive("done")

    def stop(self) -> int:
        self.connection.send(("stop", None, None))
        peak = self._receive("peak")
        self.process.join(timeout=30)
        return peak

    def _receive(self, expected: str):
        if not self.connection.poll(3600):
            raise TimeoutError(f"worker gave no answer ({expected})")
        tag, value = self.connection.recv()
        assert tag == expected, (tag, expected)
        return value


# ----------------------------------------------------------------------------------------------- set-up


def write_random_checkpoint(folder: Path, config: VitConfig, seed: int = 0) -> Path:
    """A model folder in the official layout with random weights (and a head that spreads the scores)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = build_model(config, "linear", NUM_TAGS)
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0 / config.embed_dim**0.5)
        model.head.bias.normal_(-1.5, 1.0)  # most tags unlikely, some above the 0.2 threshold
    folder.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()},
              str(folder / f"BENCH-{TIMM_NAME}.safetensors"))
    (folder / "tags.json").write_text(json.dumps({f"tag_{index}": index for index in range(NUM_TAGS)}))
    return folder


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Photo-like 1-4 MP JPEGs: smooth gradients, shapes and grain, so decoding costs what real photos cost."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        width, height = IMAGE_SIZES[index % len(IMAGE_SIZES)]
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = rng.uniform(0, 6.28, size=3)
        channels = [128 + 100 * np.sin(xx / rng.uniform(60, 300) + yy / rng.uniform(60, 300) + p) for p in phase]
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, size=(height, width, 3))
        cx, cy, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(100, 500)
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 < radius**2] *= 0.4
        path = folder / f"image_{index:04d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def default_modes(device: torch.device, batch_sizes: list[int], project_batch: int) -> list[Mode]:
    if device.type == "cuda":
        return [
            Mode("reference fp16, 1 image/forward", "reference", 1),
            Mode(f"project fp16, batch {project_batch}", "fp16", project_batch),
            Mode(f"project bf16, batch {project_batch}", "bf16", project_batch),
            Mode(f"project bf16 + torch.compile, batch {project_batch}", "bf16+compile", project_batch),
        ]
    modes = [Mode("reference fp32, 1 image/forward", "reference", 1)]
    modes += [Mode(f"project fp32, batch {size}", "fp32", size) for size in batch_sizes]
    modes += [
        Mode("project fp32 + torch.compile (opt-in), batch 1", "fp32+compile", 1),
        Mode("project int8 (opt-in), batch 1", "int8", 1),
        Mode("project bf16 (opt-in), batch 1", "bf16", 1),
    ]
    return modes


# ------------------------------------------------------------------------------------------- measuring


def agreement(probs: np.ndarray, reference: np.ndarray, k: int = 10, threshold: float = 0.2) -> dict[str, float]:
    """How far a mode's scores are from the reference's: what a user would see change."""
    top = np.argsort(-probs, axis=1)[:, :k]
    top_ref = np.argsort(-reference, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top, top_ref, strict=True)])
    jaccard = np.mean([_jaccard(p > threshold, r > threshold) for p, r in zip(probs, reference, strict=True)])
    return {
        "max_abs_diff": float(np.abs(probs - reference).max()),
        "top1_agreement": float(np.mean(top[:, 0] == top_ref[:, 0])),
        f"top{k}_overlap": float(overlap),
        f"tag_jaccard_at_{threshold}": float(jaccard),  # overlap of the tag sets a prompt would get
    }


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPU cores"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.machine()}"


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    config = TINY if args.tiny else SO400M
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="jtp-bench-") as scratch:
        scratch = Path(scratch)
        model_dir = Path(args.checkpoint) if args.checkpoint else write_random_checkpoint(scratch / "model", config)
        paths = write_jpegs(scratch / "images", args.images)
        if device.type == "cuda":
            from jtp_core.inference.devices import gpu_batch_size

            project_batch = args.gpu_batch or gpu_batch_size(device)
        else:
            project_batch = max(batch_sizes)
        modes = default_modes(device, batch_sizes, project_batch)
        if args.skip:
            modes = [mode for mode in modes if mode.worker not in args.skip.split(",")]
        workers = {}
        for mode in modes:  # one at a time: loading several real-size models at once would add up in memory
            if mode.worker not in workers:
                workers[mode.worker] = Worker(mode.worker, model_dir, str(device), config, args.threads)
        group = max(mode.batch_size for mode in modes)
        first_call = {}  # warm-up at each batch shape (oneDNN/cuDNN plans, torch.compile), reported apart
        for mode in modes:
            first_call[mode] = workers[mode.worker].run(paths[: mode.batch_size], mode.batch_size)[0]
        seconds = {mode: 0.0 for mode in modes}
        per_round = {mode: [] for mode in modes}  # seconds per image in each round: shows the noise
        probs = {mode: [] for mode in modes}
        load_before = os.getloadavg()
        for round_index, start in enumerate(range(0, len(paths), group)):
            chunk = paths[start : start + group]
            shift = round_index % len(modes)  # rotate who goes first, so no mode always follows the same one
            for mode in modes[shift:] + modes[:shift]:
                elapsed, result = workers[mode.worker].run(chunk, mode.batch_size)
                seconds[mode] += elapsed
                per_round[mode].append(elapsed / len(chunk))
                probs[mode].append(result)
        load_after = os.getloadavg()
        peaks = {kind: worker.stop() for kind, worker in workers.items()}
    reference_mode = modes[0]
    reference_probs = np.concatenate(probs[reference_mode])
    peak = peak_tflops(device, args.peak_tflops)
    rows = []
    for mode in modes:
        rate = len(paths) / seconds[mode]
        row = {
            "mode": mode.label,
            "images_per_s": rate,
            "seconds_per_image": seconds[mode] / len(paths),
            "seconds_per_image_by_round": [round(value, 3) for value in per_round[mode]],
            "vs_reference": rate / (len(paths) / seconds[reference_mode]),
            "peak_memory_gib": peaks[mode.worker] / 2**30,
            "first_call_s": first_call[mode],
            "load_s": workers[mode.worker].load_seconds,
            **agreement(np.concatenate(probs[mode]), reference_probs),
        }
        if peak and not args.tiny:
            row["fraction_of_peak"] = rate * GFLOP_PER_IMAGE / (peak * 1000)
        rows.append(row)
    return {
        "machine": machine_description(device),
        "device": str(device),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
        "model": "tiny" if args.tiny else (f"checkpoint {args.checkpoint}" if args.checkpoint else "So400m, random"),
        "images": len(paths),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "peak_tflops": peak,
        "rows": rows,
    }


def print_report(report: dict) -> None:
    print(f"{report['machine']} | torch {report['torch']} | {report['threads']} threads | {report['model']} | "
          f"{report['images']} images | load avg before/after {report['load_average_before_after']}")
    print(f"{'mode':44} {'img/s':>8} {'s/img':>7} {'x ref':>6} {'peak GiB':>9} {'max|Δ|':>8} "
          f"{'top1':>5} {'top10':>6} {'tagJ':>6}" + ("  of peak" if report["peak_tflops"] else ""))
    for row in report["rows"]:
        line = (f"{row['mode']:44} {row['images_per_s']:8.3f} {row['seconds_per_image']:7.3f} "
                f"{row['vs_reference']:6.2f} {row['peak_memory_gib']:9.2f} {row['max_abs_diff']:8.1e} "
                f"{row['top1_agreement']:5.2f} {row['top10_overlap']:6.2f} {row['tag_jaccard_at_0.2']:6.3f}")
        if "fraction_of_peak" in row:
            line += f"  {row['fraction_of_peak']:7.1%}"
        print(line + "  s/img by round: " + " ".join(f"{value:.2f}" for value in row["seconds_per_image_by_round"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a 2-block model instead of the real-size one")
    parser.add_argument("--images", type=int, default=None, help="images per mode (default 8 on a CPU, 512 on a GPU)")
    parser.add_argument("--batch-sizes", default="1,2,4", help="CPU: project fp32 batch sizes to compare")
    parser.add_argument("--gpu-batch", type=int, default=None, help="GPU batch size (default: from free memory)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, TFLOP/s")
    parser.add_argument("--checkpoint", default=None, help="a real model folder instead of random weights")
    parser.add_argument("--skip", default="", help="comma-separated workers to leave out, e.g. bf16,int8")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.images is None:
        args.images = 512 if (args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())) else 8
    report = run(args)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
