"""Opt-in int8 mode for the CPU: dynamic quantization of the backbone's Linear layers.

Weights are stored as int8 (per output channel) and activations are quantized per batch at run time, so
the big matrix products run on int8 units. It changes scores slightly (the benchmark reports top-k
agreement and the largest score difference against fp32), which is why it is never the default.

torch.ao.quantization.quantize_dynamic is deprecated (torch says it moves to torchao) but still works in
torch 2.14; it is used while present, since it needs no extra package and runs well on x86 CPUs. Once it
is gone, torchao's int8 dynamic quantization is used if installed (checked with torchao 0.18.0).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import JTPError


def quantize_int8(model: nn.Module, float_modules: tuple[str, ...]) -> nn.Module:
    """Quantize every plain ``nn.Linear`` of the backbone to dynamic int8, in place; CPU only.

    The classifier head stays in float: it is ~3% of the compute and sets the scores directly.
    """
    if next(model.parameters()).device.type != "cpu":
        raise JTPError("int8 precision runs on the CPU only; use fp16 or bf16 on a GPU")
    names = {name for name, module in model.named_modules() if _is_backbone_linear(name, module, float_modules)}
    if not names:
        return model
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:  # removed in a later torch: torchao is where it went
        return _quantize_with_torchao(model, names)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*deprecated.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*deprecated.*", category=DeprecationWarning)
        return quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names}, inplace=True)


def is_quantized(model: nn.Module) -> bool:
    """True when a layer was swapped by torch.ao, or holds a torchao int8 weight tensor."""
    for module in model.modules():
        if type(module).__module__.startswith("torch.ao.nn.quantized"):
            return True
        if type(getattr(module, "weight", None)).__module__.startswith("torchao"):
            return True
    return False


def _is_backbone_linear(name: str, module: nn.Module, float_modules: tuple[str, ...]) -> bool:
    # the attention-pool head stays float too: it is a small share of the compute, and heatmaps need its gradient
    return type(module) is nn.Linear and name.split(".")[0] not in float_modules


def _quantize_with_torchao(model: nn.Module, names: set[str]) -> nn.Module:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as error:
        raise JTPError(
            f"int8 precision needs torch.ao.quantization (gone from torch {torch.__version__}) or the "
            "torchao package: pip install torchao"
        ) from error
    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=lambda _module, fqn: fqn in names)
    return model
