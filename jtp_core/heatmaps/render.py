"""Turning tag heatmaps into masks and overlays: plain tensor functions shared by the node and the CLI.

Maps and masks are float tensors [B, H, W] in [0, 1]; images are [B, H, W, C] in [0, 1] (ComfyUI's layout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .colormaps import COLORMAPS
from .heatmap import Heatmap

NORMALIZE_MODES = ("per image", "per batch")


def combine_heatmaps(heatmaps: Sequence[Heatmap], normalize: str = "per image") -> torch.Tensor:
    """One map per image [B, H, W]: the union (maximum) of its tags' maps.

    ``per image``: every tag's map peaks at 1 in every image. ``per batch``: a tag's map is scaled by its
    strength relative to that tag's strongest image in the batch, so images where the tag is weak stay dim.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {normalize!r}")
    strongest: dict[str, float] = {}
    if normalize == "per batch":
        for heatmap in heatmaps:
            for tag, peak in zip(heatmap.tags, heatmap.peaks, strict=True):
                strongest[tag] = max(strongest.get(tag, 0.0), peak)
    combined = []
    for heatmap in heatmaps:
        maps = heatmap.maps
        if normalize == "per batch":
            scale = torch.tensor([peak / strongest[tag] if strongest[tag] > 0 else 0.0
                                  for tag, peak in zip(heatmap.tags, heatmap.peaks, strict=True)])
            maps = maps * scale[:, None, None]
        union = maps.amax(dim=0) if len(maps) else maps.new_zeros(maps.shape[1:])
        combined.append(union)
    return torch.stack(combined).clamp(0, 1)


def threshold_mask(heat: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the heat is at least ``threshold``, else 0; a threshold of 0 keeps the soft heat as the mask."""
    if threshold <= 0:
        return heat
    return (heat >= threshold).to(heat.dtype)


def feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian blur of masks [B, H, W] over ``radius`` pixels (sigma = radius / 2); 0 leaves them as they are."""
    if radius <= 0:
        return mask
    sigma = radius / 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(mask.device)
    x = mask.float().unsqueeze(1)
    # separable blur; edges replicate so a mask touching the border is not darkened there
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.squeeze(1).clamp(0, 1).to(mask.dtype)


def colorize(heat: torch.Tensor, colormap: str = "jet") -> torch.Tensor:
    """Heat [B, H, W] in [0, 1] → RGB [B, H, W, 3] through a piecewise-linear colormap."""
    try:
        anchors = COLORMAPS[colormap]
    except KeyError:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}") from None
    positions = torch.tensor([position for position, _ in anchors], device=heat.device)
    colors = torch.tensor([color for _, color in anchors], device=heat.device)
    value = heat.float().clamp(0, 1)
    upper = torch.searchsorted(positions, value.contiguous(), right=True).clamp(1, len(anchors) - 1)
    lower = upper - 1
    span = positions[upper] - positions[lower]
    frac = ((value - positions[lower]) / span).clamp(0, 1).unsqueeze(-1)
    return colors[lower] * (1 - frac) + colors[upper] * frac


def overlay(images: torch.Tensor, heat: torch.Tensor, opacity: float = 0.5, colormap: str = "jet") -> torch.Tensor:
    """The colormapped heat blended over IMAGE [B, H, W, C] → RGB IMAGE [B, H, W, 3]."""
    rgb = images[..., :3].float() if images.shape[-1] >= 3 else images[..., :1].float().expand(-1, -1, -1, 3)
    heat = heat.to(rgb.device)
    if heat.shape[0] == 1 and rgb.shape[0] > 1:
        heat = heat.expand(rgb.shape[0], -1, -1)
    return (rgb * (1 - opacity) + colorize(heat, colormap) * opacity).clamp(0, 1)
