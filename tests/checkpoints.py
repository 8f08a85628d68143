"""Tiny JTP checkpoints in the official file layout, built with timm directly (not through the core)."""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

TIMM_NAME = "vit_so400m_patch14_siglip_384"
TINY = {"embed_dim": 72, "depth": 2, "num_heads": 1, "mlp_ratio": 2.0}  # SigLIP head width 72, as in So400m


def tiny_tags(count: int) -> list[str]:
    # realistic spellings: underscores and parentheses, as in the real vocabulary
    base = ["anthro", "female", "male", "solo", "membrane_(anatomy)", "blue_eyes", "red_hat", "hi_res"]
    return [base[i] if i < len(base) else f"tag_{i}" for i in range(count)]


def build_timm_model(variant: str, num_tags: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_tags, **TINY)
    with torch.no_grad():  # timm zero-inits the head; random weights give every tag a different score
        model.head.weight.normal_(0, 0.5)
        model.head.bias.normal_(0, 0.5)
    if variant == "gated":
        gated = torch.nn.Module()
        gated.linear = torch.nn.Linear(TINY["embed_dim"], 2 * num_tags)
        with torch.no_grad():
            gated.linear.weight.normal_(0, 0.5)
        model.head = gated
    return model.eval()


def write_checkpoint(
    folder: Path, variant: str = "linear", num_tags: int = 16, seed: int = 0, weights_name: str | None = None
) -> tuple[Path, Path]:
    """Write ``<folder>/<weights>.safetensors`` and ``<folder>/tags.json``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    model = build_timm_model(variant, num_tags, seed)
    weights = folder / (weights_name or f"tiny-{variant}-vit_so400m_patch14_siglip_384.safetensors")
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(weights))
    tags = folder / "tags.json"
    tags.write_text(json.dumps({tag: index for index, tag in enumerate(tiny_tags(num_tags))}))
    return weights, tags
