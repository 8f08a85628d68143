"""HydraTagger: timm's NaFlex SigLIP2 So400m/16 backbone plus a per-tag Hydra pool head.

The backbone's modules are timm's own (``naflexvit_so400m_patch16_siglip``: ``embeds``, ``blocks``, ``norm``), taken
out of the timm model so that the state dict holds exactly the checkpoint's keys; timm's attention pool and
classifier are never kept. ``forward`` does the rest itself: uint8 → [-1, 1], embeds (timm interpolates the 16×16
position table per image grid in float32 with bilinear antialias — bf16 antialias is not implemented on CPU),
blocks with a boolean key mask, final norm, the head in tag chunks, sigmoid in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ...errors import JTPError
from .heads import Hydra2Pool, HydraPool, TagDot, hydra_logits

VARIANTS = ("rr_hydra", "rr_hydra2")
TIMM_NAME = "naflexvit_so400m_patch16_siglip"
PATCH_BYTES = 16 * 16 * 3


@dataclass(frozen=True)
class HydraConfig:
    """Every dimension of the family; the defaults are the released So400m/16 backbone."""

    variant: str  # "rr_hydra" (JTP-3) or "rr_hydra2" (Hydra 3.5)
    num_tags: int
    width: int = 1152
    depth: int = 27
    num_heads: int = 16  # 72 channels each
    mlp_dim: int = 4304
    pos_grid: tuple[int, int] = (16, 16)
    ln_eps: float = 1e-6  # backbone LayerNorms (timm's default); see checkpoint.default_ln_eps
    pool_heads: int = 32
    pool_head_dim: int = 64
    ff_dim: int = 6144  # rr_hydra 6144; rr_hydra2 5120
    mid_blocks: int = 1  # rr_hydra2 only
    pool_eps: float = 1e-5

    @classmethod
    def released(cls, variant: str, num_tags: int, **changes) -> HydraConfig:
        base = cls(variant=variant, num_tags=num_tags, ff_dim=6144 if variant == "rr_hydra" else 5120)
        return replace(base, **changes)


class HydraTagger(nn.Module):
    """``model(patches uint8 [B,S,768], coords int [B,S,2] (y,x), valid bool [B,S]) -> probabilities float32 [B,C]``."""

    def __init__(self, config: HydraConfig, tag_chunk: int = 1024, device=None, dtype=None) -> None:
        super().__init__()
        if config.variant not in VARIANTS:
            raise ValueError(f"unknown Hydra head {config.variant!r}; known: {', '.join(VARIANTS)}")
        self.config = config
        self.tag_chunk = tag_chunk
        vit = _build_timm_backbone(config, device)
        self.embeds, self.blocks, self.norm = vit.embeds, vit.blocks, vit.norm
        pool_args = dict(dim=config.width, num_tags=config.num_tags, heads=config.pool_heads,
                         head_dim=config.pool_head_dim, ff_dim=config.ff_dim, eps=config.pool_eps,
                         device=device, dtype=dtype)
        if config.variant == "rr_hydra":
            self.attn_pool = HydraPool(**pool_args)
            self.head = None  # the readout is attn_pool.out_proj
        else:
            self.attn_pool = Hydra2Pool(mid_blocks=config.mid_blocks, **pool_args)
            self.head = TagDot(config.num_tags, config.pool_heads * config.pool_head_dim, device=device, dtype=dtype)
        if dtype is not None:
            self.to(dtype=dtype)

    @property
    def num_tags(self) -> int:
        return self.attn_pool.num_tags

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype  # a LayerNorm: never swapped for a quantized module

    def forward(self, patches: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        features, valid, _, _ = self.features(patches, coords, valid)
        logits = self.head_logits(features, valid)
        return torch.sigmoid(logits.float())

    def features(
        self, patches: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor, keep_blocks: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(final-normed tokens [B,S,D], valid [B,S], coords [B,S,2], raw outputs of the last ``keep_blocks``
        blocks). The whole padded sequence is run, as RedRocket's releases run it: trimming it to the batch's
        longest image would make an image's bf16 result depend on the other images of its batch (the masked
        softmax is summed in another order), by up to ~6e-3."""
        device = self.norm.weight.device
        valid = valid.to(device=device, dtype=torch.bool)
        patches, coords = patches.to(device), coords.to(device)
        # uint8 → [-1, 1] in the model's dtype, each step rounded in it (bit parity with the release in bf16)
        x = patches.to(self.dtype)
        x = x / 127.5
        x = x - 1
        x, _ = self.embeds(x, patch_coord=coords, patch_valid=valid)
        mask = valid[:, None, None, :]  # key mask: every query sees the real tokens only
        kept = []
        first_kept = len(self.blocks) - keep_blocks
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask=mask)
            if i >= first_kept:
                kept.append(x)
        return self.norm(x), valid, coords, kept

    def head_logits(self, features: torch.Tensor, valid: torch.Tensor, tags: torch.Tensor | None = None,
                    tag_chunk: int | None = None) -> torch.Tensor:
        """Logits [B, n] for ``tags`` (all when None) from tokens, computed ``tag_chunk`` tags at a time."""
        chunk = self.tag_chunk if tag_chunk is None else tag_chunk
        return hydra_logits(self.attn_pool, self.head, features, valid, tags=tags, tag_chunk=chunk)


MIN_TIMM = "1.0.16"  # first timm with NaFlexViT; tested with 1.0.31


def _build_timm_backbone(config: HydraConfig, device) -> nn.Module:
    import timm  # deferred: importing timm costs a second and pulls in torchvision

    if not timm.is_model(TIMM_NAME):  # NaFlexViT arrived in timm 1.0.16; hosts may pin an older one
        raise JTPError(
            f"JTP-3 / Hydra models need timm {MIN_TIMM} or newer (its NaFlexViT); this Python has timm "
            f"{timm.__version__}: pip install 'timm>={MIN_TIMM}' (JTP-1 models work with the timm you have)"
        )

    # timm computes the MLP width as int(width · ratio): nudge the ratio so that lands exactly on mlp_dim
    mlp_ratio = (config.mlp_dim + 0.5) / config.width
    with torch.device(device or "cpu"):
        vit = timm.create_model(
            TIMM_NAME,
            pretrained=False,
            num_classes=0,
            global_pool="",  # no timm attention pool: the Hydra pool replaces it
            pos_embed_interp_mode="bilinear",
            weight_init="",
            fix_init=False,
            embed_dim=config.width,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=mlp_ratio,
            pos_embed_grid_size=tuple(config.pos_grid),
        )
    embeds = vit.embeds
    if tuple(embeds.proj.weight.shape) != (config.width, PATCH_BYTES) or vit.blocks[0].mlp.fc1.out_features != (
        config.mlp_dim
    ):
        raise ValueError(f"timm built an unexpected backbone for {config}")
    if not embeds.pos_embed_antialias or embeds.pos_embed_interp_mode != "bilinear":
        raise ValueError("timm's NaFlex position embedding must be bilinear with antialias")
    for module in (embeds, vit.blocks, vit.norm):
        for layer in module.modules():
            if isinstance(layer, nn.LayerNorm):
                layer.eps = config.ln_eps
    return vit
