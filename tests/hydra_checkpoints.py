"""Tiny JTP-3 Hydra / Hydra 3.5 checkpoints in the official layouts, written from plain tensors.

Key names, shapes (scaled down), dtypes (bf16 weights, float32 ``validation``) and metadata follow
JTP3_FACTS.md §1-§5; nothing here uses jtp_core, so loading these files checks the product's key naming.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

# width 144 = 2 backbone heads × 72 (the family's head size); pool 4 heads × 8; 16×16 position table
TINY = dict(width=144, depth=2, mlp=96, grid=16, pool_heads=4, pool_head_dim=8, ff=24, mid_blocks=1)
ARCH = {variant: "naflexvit_so400m_patch16_siglip+" + variant for variant in ("rr_hydra", "rr_hydra2")}
CATEGORIES = ("general", "species", "character", "meta", "copyright", "lore")


def tiny_tag_names(num_tags: int) -> list[str]:
    base = ["canine", "mammal", "solo", "red_hat", "blue_eyes", "safe", "membrane_(anatomy)", "fox", "open_mouth"]
    return [base[i] if i < len(base) else f"tag_{i}" for i in range(num_tags)]


def labels_text(variant: str, tags: list[str]) -> str:
    if variant == "rr_hydra":
        return "\n".join(tags)
    lines = []
    for i, tag in enumerate(tags):
        implied = [tags[j] for j in (i + 1, i + 2) if j < len(tags) and i % 3 == 0]  # some tags imply the next ones
        lines.append(" ".join([tag, CATEGORIES[i % len(CATEGORIES)], *implied]))
    return "\n".join(lines)


def hydra_state(variant: str, num_tags: int, seed: int = 0, dims: dict | None = None) -> dict[str, torch.Tensor]:
    """Random float32 weights with the checkpoint's key names (scaled so activations stay moderate)."""
    d = {**TINY, **(dims or {})}
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen) * std + mean

    width, mlp, inner, ff = d["width"], d["mlp"], d["pool_heads"] * d["pool_head_dim"], d["ff"]
    state = {
        "embeds.pos_embed": rand(1, d["grid"], d["grid"], width, std=0.5),
        "embeds.proj.weight": rand(width, 768, std=1 / math.sqrt(768)),
        "embeds.proj.bias": rand(width, std=0.1),
        "norm.weight": rand(width, std=0.1, mean=1.0),
        "norm.bias": rand(width, std=0.1),
    }
    for i in range(d["depth"]):
        p = f"blocks.{i}."
        state.update({
            p + "norm1.weight": rand(width, std=0.1, mean=1.0), p + "norm1.bias": rand(width, std=0.1),
            p + "attn.qkv.weight": rand(3 * width, width, std=2 / math.sqrt(width)),
            p + "attn.qkv.bias": rand(3 * width, std=0.1),
            p + "attn.proj.weight": rand(width, width, std=1 / math.sqrt(width)),
            p + "attn.proj.bias": rand(width, std=0.1),
            p + "norm2.weight": rand(width, std=0.1, mean=1.0), p + "norm2.bias": rand(width, std=0.1),
            p + "mlp.fc1.weight": rand(mlp, width, std=1 / math.sqrt(width)), p + "mlp.fc1.bias": rand(mlp, std=0.1),
            p + "mlp.fc2.weight": rand(width, mlp, std=1 / math.sqrt(mlp)), p + "mlp.fc2.bias": rand(width, std=0.1),
        })
    q = rand(d["pool_heads"], num_tags, d["pool_head_dim"])
    q = q / q.pow(2).mean(-1, keepdim=True).sqrt() * 2.0  # stored already normalised (scaled: sharper attention)
    state["attn_pool.q"] = q
    state["attn_pool.kv.weight"] = rand(2 * inner, width, std=1 / math.sqrt(width))
    if variant == "rr_hydra":
        state.update({
            "attn_pool.ff_norm.weight": rand(inner, std=0.1, mean=1.0),
            "attn_pool.ff_norm.bias": rand(inner, std=0.1),
            "attn_pool.ff_in.weight": rand(2 * ff, inner, std=1 / math.sqrt(inner)),
            "attn_pool.ff_out.weight": rand(inner, ff, std=1 / math.sqrt(ff)),
            "attn_pool.out_proj.weight": rand(num_tags, inner, 2, std=1 / math.sqrt(inner)),
        })
    else:
        def glu(prefix):
            return {prefix + "proj_in.weight": rand(2 * ff, inner, std=1 / math.sqrt(inner)),
                    prefix + "proj_out.weight": rand(inner, ff, std=1 / math.sqrt(ff))}

        state.update(glu("attn_pool.ff."))
        for i in range(d["mid_blocks"]):
            p = f"attn_pool.mid_blocks.{i}."
            state[p + "q_proj.weight"] = rand(inner, inner, std=1 / math.sqrt(inner))
            state[p + "o_proj.weight"] = rand(inner, inner, std=1 / math.sqrt(inner))
            state.update(glu(p + "ff."))
        state["head.weight"] = rand(num_tags, inner, std=1 / math.sqrt(inner))
    return state


def write_hydra_checkpoint(
    path: Path,
    variant: str = "rr_hydra",
    num_tags: int = 6,
    *,
    seed: int = 0,
    state: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, str | None] | None = None,
    tags: list[str] | None = None,
    validation_steps: int = 9,
) -> Path:
    """A .safetensors file: bf16 weights (+ float32 ``validation`` [C,T,4] for rr_hydra2) and the metadata.

    ``metadata`` entries override the defaults; a value of None removes that key.
    """
    state = hydra_state(variant, num_tags, seed) if state is None else state
    tensors = {key: value.to(torch.bfloat16).contiguous() for key, value in state.items()}
    tags = tiny_tag_names(num_tags) if tags is None else tags
    meta = {
        "modelspec.architecture": ARCH[variant],
        "modelspec.title": "TINY " + variant,
        "classifier.labels": labels_text(variant, tags),
    }
    if variant == "rr_hydra2":
        counts = torch.randint(0, 100, (num_tags, validation_steps, 4), generator=torch.Generator().manual_seed(1))
        tensors["validation"] = counts.float()
        meta.update({"classifier.background": "grey", "classifier.resize": "mks2013-linear"})
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path
