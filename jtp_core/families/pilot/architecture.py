"""The JTP backbone: timm's SigLIP So400m ViT, and its dimensions told from a checkpoint's shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import CheckpointError
from .heads import GatedHead, SigmoidLinear

TIMM_NAME = "vit_so400m_patch14_siglip_384"
INPUT_SIZE = 384
SIGLIP_HEAD_DIM = 72  # So400m: 1152 wide / 16 heads; the family keeps this head width
# Top-level modules after the backbone's final norm: the attention-pool head and the classifier
HEAD_MODULES = ("attn_pool", "fc_norm", "head_drop", "head")
LINEAR = "linear"  # JTP-1 PILOT: Linear(width, N) then sigmoid
GATED = "gated"  # JTP-1.1 PILOT2: Linear(width, 2N), sigmoid(a) * sigmoid(b)


@dataclass(frozen=True)
class VitConfig:
    """Dimensions of a SigLIP ViT with attention-pool head (no class token)."""

    embed_dim: int = 1152
    depth: int = 27
    num_heads: int = 16
    mlp_hidden: int = 4304
    patch_size: int = 14
    img_size: int = INPUT_SIZE

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


SO400M = VitConfig()


def build_model(config: VitConfig, variant: str, num_tags: int, device: torch.device | str = "cpu") -> nn.Module:
    """Build the architecture with untrained weights (``device="meta"`` allocates nothing)."""
    import timm  # deferred: importing timm costs a second and pulls in torchvision

    with torch.device(device):
        model = timm.create_model(
            TIMM_NAME,
            pretrained=False,
            num_classes=num_tags,
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            # timm sizes the MLP as int(width * ratio): nudge the ratio so the hidden size comes out exact
            mlp_ratio=(config.mlp_hidden + 0.5) / config.embed_dim,
        )
        if variant == LINEAR:
            model.head = SigmoidLinear(config.embed_dim, num_tags)
        elif variant == GATED:
            model.head = GatedHead(config.embed_dim, num_tags)
        else:
            raise ValueError(f"unknown head variant {variant!r}")
    return model.eval()


def head_variant(shapes: dict[str, tuple[int, ...]]) -> tuple[str, int]:
    """Tell the head variant and tag count from the head's keys alone."""
    if "head.weight" in shapes:
        return LINEAR, shapes["head.weight"][0]
    if "head.linear.weight" in shapes:
        rows = shapes["head.linear.weight"][0]
        if rows % 2:
            raise CheckpointError(f"gated head 'head.linear.weight' has an odd number of rows ({rows})")
        return GATED, rows // 2
    raise CheckpointError(
        "no classifier head: expected 'head.weight' (JTP-1 PILOT) or 'head.linear.weight' (PILOT2); "
        "this does not look like a JTP checkpoint"
    )


def infer_config(shapes: dict[str, tuple[int, ...]]) -> VitConfig:
    """Read the ViT's dimensions off the checkpoint's tensor shapes."""
    required = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in shapes]
    if missing:
        raise CheckpointError(
            f"missing {', '.join(missing)}: this is not a SigLIP ViT checkpoint of the JTP family"
        )
    embed_dim, _, patch, _ = shapes["patch_embed.proj.weight"]
    tokens = shapes["pos_embed"][1]
    grid = round(tokens**0.5)
    if grid * grid != tokens:
        raise CheckpointError(f"pos_embed holds {tokens} tokens, not a square patch grid")
    if embed_dim % SIGLIP_HEAD_DIM:
        raise CheckpointError(f"width {embed_dim} is not a multiple of SigLIP's head width {SIGLIP_HEAD_DIM}")
    depth = 1 + max(int(key.split(".")[1]) for key in shapes if key.startswith("blocks."))
    # 27 patches of 14 cover 378 px of the 384 input; keep the 384 the model was trained at
    img_size = INPUT_SIZE if grid * patch <= INPUT_SIZE < (grid + 1) * patch else grid * patch
    return VitConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // SIGLIP_HEAD_DIM,
        mlp_hidden=shapes["blocks.0.mlp.fc1.weight"][0],
        patch_size=patch,
        img_size=img_size,
    )


def layout_problems(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Differences between a model's state dict and a checkpoint's keys and shapes (empty when they fit)."""
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
    mismatched = [
        f"{key} is {list(shapes[key])}, expected {list(expected[key])}"
        for key in sorted(set(expected) & set(shapes))
        if tuple(shapes[key]) != expected[key]
    ]
    if mismatched:
        problems.append(f"shape mismatch ({len(mismatched)}): {_preview(mismatched)}")
    return problems


def _preview(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "")
