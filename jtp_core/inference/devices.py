"""Choosing the device, the precision, the batch size and the CPU threads the tagger runs with."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .choices import DEVICES, PRECISIONS  # noqa: F401 - re-exported: the names every front end offers

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CPU_ONLY_PRECISIONS = ("int8",)  # int8 = fp32 model whose backbone Linear layers are quantized (inference.quantize)

# Batch 1 measured fastest per image on a 2-core CPU at real size (benchmarks/bench_tagger.py; see the README)
CPU_BATCH_SIZE = 1
MPS_BATCH_SIZE = 4
# Peak activation memory of one 384² image through the So400m ViT in half precision, with headroom: the MLP
# hidden (729 tokens x 4304) and qkv dominate (~18 MB); a non-fused attention matrix adds ~34 MB.
GPU_BYTES_PER_IMAGE_HALF = 64 * 2**20
GPU_MEMORY_SHARE = 0.5  # leave half of the free memory to the allocator's slack and to other models (ComfyUI)
GPU_MAX_BATCH = 64  # the GPU is saturated well before this; larger chunks only delay progress and Cancel


def pick_device(choice: str | torch.device = "auto") -> torch.device:
    """``auto`` → cuda if present, else mps, else cpu; anything else is taken as a torch device string."""
    if isinstance(choice, torch.device):
        return choice
    if choice != "auto":
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``auto`` → fp32 on the CPU, fp16 on a GPU as the reference app uses; ``int8`` → fp32 (quantized later).

    bf16 is allowed on the CPU (fast on CPUs with AMX/AVX512-BF16) but never chosen by ``auto``: it moves
    scores by up to ~1e-2.
    """
    if precision == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if precision in CPU_ONLY_PRECISIONS:
        if device.type != "cpu":
            raise ValueError(f"precision {precision!r} runs on the CPU only; use fp16 or bf16 on {device.type}")
        return torch.float32
    try:
        return _DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}") from None


def default_batch_size(device: torch.device, dtype: torch.dtype | None = None) -> int:
    """Images per forward pass: from free memory on CUDA; on the CPU the size measured fastest."""
    if device.type == "cuda":
        return gpu_batch_size(device, dtype or torch.float16)
    if device.type == "mps":
        return MPS_BATCH_SIZE
    return CPU_BATCH_SIZE


def gpu_batch_size(device: torch.device, dtype: torch.dtype = torch.float16) -> int:
    """The largest power of two whose activations fit in a share of the GPU's free memory (1..GPU_MAX_BATCH)."""
    free, _total = torch.cuda.mem_get_info(device)
    per_image = GPU_BYTES_PER_IMAGE_HALF * max(1, torch.finfo(dtype).bits // 16)
    fits = int(free * GPU_MEMORY_SHARE // per_image)
    if fits < 1:
        return 1
    return min(GPU_MAX_BATCH, 2 ** int(math.log2(fits)))


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a container's CPU quota (cgroup v2 or v1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(count, math.ceil(quota))) if quota else count


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the container may use, or None when unlimited or unknown."""
    try:
        if (root / "cpu.max").is_file():  # cgroup v2: "<quota> <period>" or "max <period>"
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:  # cgroup v1: quota -1 means unlimited
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return int(quota) / int(period)


def fit_cpu_threads() -> int:
    """Lower torch's intra-op threads to the CPUs this process may use (never raise them); returns the count.

    torch sizes its pool from the machine's cores, which oversubscribes a container with a CPU quota or a
    narrower affinity mask. An explicit OMP_NUM_THREADS is left alone.
    """
    usable = usable_cpus()
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > usable:
        torch.set_num_threads(usable)
    return torch.get_num_threads()
