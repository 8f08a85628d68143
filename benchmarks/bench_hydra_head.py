"""Hydra heads at real size on the CPU: peak memory with and without tag chunking, and full-forward times.

    .venv/bin/python benchmarks/bench_hydra_head.py            # head memory/time, both variants, bf16 + fp32
    .venv/bin/python benchmarks/bench_hydra_head.py --full     # also one full real-size forward per variant/dtype

Weights are random (real dims: JTP-3 7,504 tags, Hydra 3.5 8,886 tags); one image of 1,024 tokens (32×32 grid).
Each measurement runs in a fresh subprocess; its peak is Linux's VmHWM, reset after the weights are built
(``/proc/self/clear_refs``), minus the resident size at that point: the memory the head's activations take.

Measured on 2 shared CPU cores (torch 2.14.1, load average ~7, so times are ±20%):
    head activations, one image   all tags    chunk 1024   chunk 256
    JTP-3     (7,504 tags) bf16     432 MB       96 MB       29 MB
    JTP-3                  fp32     809 MB      192 MB      124 MB
    Hydra 3.5 (8,886 tags) bf16     529 MB       71 MB       45 MB
    Hydra 3.5              fp32    1063 MB      181 MB      119 MB
    chunked logits are bit-identical to unchunked at real size (bf16 and fp32); interleaved timing shows no
    measurable cost of chunk 1024 (JTP-3 bf16 head ≈ 8 s, Hydra 3.5 ≈ 20 s per image here).
    full forward, one image       bf16 20.4 s (JTP-3), 26.8 s (Hydra 3.5); fp32 58.3 s, 83.5 s
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TAGS = {"rr_hydra": 7504, "rr_hydra2": 8886}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    return _status_kb("VmRSS")


def _randomize(module: torch.nn.Module, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "ff_norm.weight")):
                p.fill_(1.0)
            elif name.endswith("q"):
                p.copy_(torch.nn.functional.rms_norm(torch.randn(p.shape, generator=gen), (p.shape[-1],)))
            else:
                fan_in = p.shape[-1] if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * min(0.02, fan_in ** -0.5))


def _grid_inputs(gh: int = 32, gw: int = 32, seq: int = 1024):
    n = gh * gw
    patches = torch.zeros(1, seq, 768, dtype=torch.uint8)
    patches[0, :n] = torch.randint(0, 256, (n, 768), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    coords = torch.zeros(1, seq, 2, dtype=torch.int32)
    coords[0, :n, 0], coords[0, :n, 1] = torch.arange(n) // gw, torch.arange(n) % gw
    valid = torch.zeros(1, seq, dtype=torch.bool)
    valid[0, :n] = True
    return patches, coords, valid


def measure_head(variant: str, dtype_name: str, chunk: int, out: str) -> dict:
    from jtp_core.families.hydra.heads import Hydra2Pool, HydraPool, TagDot, hydra_logits

    dtype = DTYPES[dtype_name]
    num_tags = TAGS[variant]
    with torch.device("meta"):
        if variant == "rr_hydra":
            pool, head = HydraPool(num_tags=num_tags), None
        else:
            pool, head = Hydra2Pool(num_tags=num_tags), TagDot(num_tags, 2048)
    modules = [m for m in (pool, head) if m is not None]
    for m in modules:
        m.to_empty(device="cpu").to(dtype)
        _randomize(m, dtype)
    features = torch.randn(1, 1024, 1152, generator=torch.Generator().manual_seed(2)).to(dtype)
    mask = torch.ones(1, 1024, dtype=torch.bool)
    base = _reset_peak()
    start = time.perf_counter()
    with torch.inference_mode():
        logits = hydra_logits(pool, head, features, mask, tag_chunk=chunk)
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    torch.save(logits.float(), out)
    return {"peak_mb": (peak - base) / 1024, "seconds": seconds}


def measure_full(variant: str, dtype_name: str) -> dict:
    from jtp_core.families.hydra.model import HydraConfig, HydraTagger

    dtype = DTYPES[dtype_name]
    model = HydraTagger(HydraConfig.released(variant, TAGS[variant]), device="meta")
    model.to_empty(device="cpu").to(dtype)
    _randomize(model, dtype)
    model.eval().requires_grad_(False)
    inputs = _grid_inputs()
    base = _reset_peak()
    start = time.perf_counter()
    with torch.inference_mode():
        probs = model(*inputs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": (_status_kb("VmHWM") - base) / 1024,
            "weights_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
            "finite": bool(torch.isfinite(probs).all())}


def _child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="also time one full real-size forward per variant/dtype")
    parser.add_argument("--chunks", default="0,1024,256", help="tag chunks to try (0 = all tags at once)")
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--no-head", action="store_true", help="skip the head measurements")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = measure_head(*rest[:2], int(rest[2]), rest[3]) if kind == "head" else measure_full(*rest)
        print(json.dumps(result))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one image, 1,024 tokens")
    chunks = [int(c) for c in args.chunks.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for variant in TAGS if not args.no_head else ():
            for dtype_name in args.dtypes.split(","):
                outputs = {}
                for chunk in chunks:
                    out = f"{tmp}/{variant}-{dtype_name}-{chunk}.pt"
                    r = _child(["head", variant, dtype_name, str(chunk), out])
                    outputs[chunk] = torch.load(out)
                    label = "all tags" if chunk == 0 else f"chunk {chunk}"
                    print(f"head {variant:9} {dtype_name} {label:>10}: peak +{r['peak_mb']:7.0f} MB  "
                          f"{r['seconds']:6.2f} s")
                reference = outputs[chunks[0]]
                for chunk, logits in outputs.items():
                    diff = (logits - reference).abs().max().item()
                    print(f"    chunk {chunk} vs {chunks[0]}: max |Δlogit| = {diff:.3g}"
                          f"{' (bit-identical)' if diff == 0 else ''}")
    if args.full:
        for variant in TAGS:
            for dtype_name in args.dtypes.split(","):
                r = _child(["full", variant, dtype_name])
                print(f"full forward {variant:9} {dtype_name}: {r['seconds']:6.1f} s  weights {r['weights_mb']:6.0f} MB"
                      f"  activations peak +{r['peak_mb']:5.0f} MB  finite={r['finite']}")


if __name__ == "__main__":
    main()
