"""Choosing the device and the precision the tagger runs in."""

from __future__ import annotations

import torch

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
    """``auto`` → fp32 on the CPU (it has no fast half units), fp16 on a GPU as the reference app uses."""
    if precision == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    try:
        return _DTYPES[precision]
    except KeyError:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}") from None


def default_batch_size(device: torch.device) -> int:
    return 32 if device.type == "cuda" else 4
