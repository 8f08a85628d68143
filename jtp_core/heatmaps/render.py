"""Turning tag heatmaps into masks and overlays: plain tensor functions shared by the node and the CLI.

Maps and masks are float tensors [B, H, W] in [0, 1]; images are [B, H, W, C] in [0, 1] (ComfyUI's layout).
Everything is computed in row blocks of a few MB (``mask_rows``, ``overlay_rows``), so rendering a 144 MP image
costs its output (the mask and overlay themselves) plus a small working set: no [T, H, W] float32 stacks, no
int64 index images, no full-size temporaries per step. ``render_mask_uint8`` / ``render_overlay_uint8`` write
8-bit outputs (the CLI's PNGs) directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .colormaps import COLORMAPS
from .heatmap import Heatmap
from .mapping import BLOCK_BYTES

NORMALIZE_MODES = ("per image", "per batch")


def tag_scales(heatmaps: Sequence[Heatmap], normalize: str = "per image") -> list[torch.Tensor]:
    """Per image, a factor per tag: 1 (``per image``), or the tag's strength relative to its strongest image
    in the batch (``per batch``, so images where the tag is weak stay dim)."""
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {normalize!r}")
    if normalize == "per image":
        return [torch.ones(len(heatmap.tags)) for heatmap in heatmaps]
    strongest: dict[str, float] = {}
    for heatmap in heatmaps:
        for tag, peak in zip(heatmap.tags, heatmap.peaks, strict=True):
            strongest[tag] = max(strongest.get(tag, 0.0), peak)
    return [torch.tensor([peak / strongest[tag] if strongest[tag] > 0 else 0.0
                          for tag, peak in zip(heatmap.tags, heatmap.peaks, strict=True)], dtype=torch.float32)
            for heatmap in heatmaps]


def heat_rows(heatmap: Heatmap, start: int, stop: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The union (maximum) of the tags' maps over rows start:stop → [stop - start, W] float32 in [0, 1]."""
    height, width = heatmap.size
    start, stop = max(0, start), min(height, stop)
    if not heatmap.tags:
        return torch.zeros(max(0, stop - start), width)
    maps = heatmap.rows(start, stop)
    if scale is not None:
        maps = maps * scale.to(maps.dtype)[:, None, None]
    return maps.amax(dim=0).clamp_(0, 1)


def mask_rows(
    heatmap: Heatmap, start: int, stop: int, threshold: float = 0.0, radius: int = 0,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask rows start:stop: the heat, thresholded, then feathered (its ``radius`` rows of halo read too)."""
    height = heatmap.size[0]
    start, stop = max(0, start), min(height, stop)
    low, high = max(0, start - max(radius, 0)), min(height, stop + max(radius, 0))
    block = threshold_mask(heat_rows(heatmap, low, high, scale), threshold)
    if radius <= 0:
        return block
    return _blur_rows(block, radius, start - low, stop - start, at_top=low == 0, at_bottom=high == height)


def combine_heatmaps(heatmaps: Sequence[Heatmap], normalize: str = "per image") -> torch.Tensor:
    """One map per image [B, H, W]: the union (maximum) of its tags' maps (see ``tag_scales``)."""
    return render_masks(heatmaps, normalize)


def render_masks(
    heatmaps: Sequence[Heatmap], normalize: str = "per image", threshold: float = 0.0, radius: int = 0
) -> torch.Tensor:
    """[B, H, W] float32 masks, filled block by block (the images of a batch have one size)."""
    scales = tag_scales(heatmaps, normalize)
    height, width = heatmaps[0].size if heatmaps else (0, 0)
    out = torch.empty(len(heatmaps), height, width)
    for index, (heatmap, scale) in enumerate(zip(heatmaps, scales, strict=True)):
        step = heatmap.block_rows()
        for start in range(0, height, step):
            out[index, start : start + step] = mask_rows(heatmap, start, start + step, threshold, radius, scale)
    return out


def render_mask_uint8(heatmap: Heatmap, threshold: float = 0.0, radius: int = 0) -> np.ndarray:
    """One image's mask as 8-bit grayscale [H, W]: the only full-size array is the result itself."""
    height, width = heatmap.size
    out = np.empty((height, width), dtype=np.uint8)
    step = heatmap.block_rows()
    for start in range(0, height, step):
        block = mask_rows(heatmap, start, start + step, threshold, radius)
        out[start : start + step] = block.mul_(255).round_().to(torch.uint8).numpy()
    return out


def threshold_mask(heat: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where the heat is at least ``threshold``, else 0; a threshold of 0 keeps the soft heat as the mask."""
    if threshold <= 0:
        return heat
    return (heat >= threshold).to(heat.dtype)


def feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian blur of masks [B, H, W] over ``radius`` pixels (sigma = radius / 2); 0 leaves them as they are.

    Done in row blocks with a halo of ``radius`` rows, into one output tensor."""
    if radius <= 0:
        return mask
    height, width = mask.shape[-2:]
    out = torch.empty(mask.shape, dtype=mask.dtype, device=mask.device)
    step = max(1, BLOCK_BYTES // (4 * max(1, width)))
    for index in range(mask.shape[0]):
        for start in range(0, height, step):
            stop = min(height, start + step)
            low, high = max(0, start - radius), min(height, stop + radius)
            block = _blur_rows(mask[index, low:high].float(), radius, start - low, stop - start,
                               at_top=low == 0, at_bottom=high == height)
            out[index, start:stop] = block.to(mask.dtype)
    return out


def _blur_rows(block: torch.Tensor, radius: int, offset: int, count: int, at_top: bool, at_bottom: bool):
    """Blur [n, W] rows that include a halo; → the ``count`` rows from ``offset``. Image edges replicate (so a
    mask touching the border is not darkened there); inner block edges use the real neighbouring rows."""
    sigma = radius / 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(block.device)
    x = block.float()[None, None]  # [1, 1, n, W]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    top = radius - offset if at_top else 0  # rows missing above: the image edge, replicated
    bottom = radius - (block.shape[0] - offset - count) if at_bottom else 0
    if top > 0 or bottom > 0:
        x = F.pad(x, (0, 0, max(top, 0), max(bottom, 0)), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))  # [1, 1, count + ..., W]
    first = offset - radius + max(top, 0)
    return x[0, 0, first : first + count].clamp_(0, 1)


def colorize(heat: torch.Tensor, colormap: str = "jet") -> torch.Tensor:
    """Heat [..., H, W] in [0, 1] → RGB [..., H, W, 3] through a piecewise-linear colormap."""
    try:
        anchors = COLORMAPS[colormap]
    except KeyError:
        raise ValueError(f"colormap must be one of {', '.join(COLORMAPS)}; got {colormap!r}") from None
    value = heat.float().clamp(0, 1)
    out = torch.zeros(*value.shape, 3, device=heat.device)
    # per segment [p0, p1]: a linear ramp between two colors (no int64 index images, no gathers)
    for (p0, c0), (p1, c1) in zip(anchors, anchors[1:], strict=False):
        inside = (value >= p0) & (value <= p1) if p0 == anchors[0][0] else (value > p0) & (value <= p1)
        frac = ((value - p0) / (p1 - p0)).clamp_(0, 1)
        for channel in range(3):
            ramp = c0[channel] + (c1[channel] - c0[channel]) * frac
            out[..., channel] = torch.where(inside, ramp, out[..., channel])
    return out


def overlay_rows(rgb: torch.Tensor, heat: torch.Tensor, opacity: float, colormap: str) -> torch.Tensor:
    """Blend one block: RGB [..., n, W, 3] float in [0, 1] and heat [..., n, W] → [..., n, W, 3]."""
    return (rgb * (1 - opacity) + colorize(heat, colormap) * opacity).clamp_(0, 1)


def overlay(images: torch.Tensor, heat: torch.Tensor, opacity: float = 0.5, colormap: str = "jet") -> torch.Tensor:
    """The colormapped heat blended over IMAGE [B, H, W, C] → RGB IMAGE [B, H, W, 3], block by block."""
    heat = heat.to(images.device)
    if heat.shape[0] == 1 and images.shape[0] > 1:
        heat = heat.expand(images.shape[0], -1, -1)
    batch, height, width = images.shape[:3]
    out = torch.empty(batch, height, width, 3, device=images.device)
    step = max(1, BLOCK_BYTES // (16 * max(1, width)))
    for start in range(0, height, step):
        rgb = _rgb(images[:, start : start + step])
        out[:, start : start + step] = overlay_rows(rgb, heat[:, start : start + step], opacity, colormap)
    return out


def render_overlays(
    images: torch.Tensor, heatmaps: Sequence[Heatmap], normalize: str = "per image", opacity: float = 0.5,
    colormap: str = "jet",
) -> torch.Tensor:
    """Overlays [B, H, W, 3] of each image's combined heat, without a full-size heat tensor."""
    scales = tag_scales(heatmaps, normalize)
    batch, height, width = images.shape[:3]
    out = torch.empty(batch, height, width, 3)
    for index, (heatmap, scale) in enumerate(zip(heatmaps, scales, strict=True)):
        step = max(1, min(heatmap.block_rows(), BLOCK_BYTES // (16 * max(1, width))))
        for start in range(0, height, step):
            rgb = _rgb(images[index, start : start + step].cpu())
            heat = heat_rows(heatmap, start, start + step, scale)
            out[index, start : start + step] = overlay_rows(rgb, heat, opacity, colormap)
    return out


def render_overlay_uint8(
    rgb: np.ndarray, heatmap: Heatmap, opacity: float = 0.5, colormap: str = "jet"
) -> np.ndarray:
    """An 8-bit RGB image [H, W, 3] (uint8) and its heatmap → the 8-bit overlay, written block by block."""
    height, width = heatmap.size
    if rgb.shape[:2] != (height, width):
        raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} but its heatmap {width}x{height}")
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = max(1, min(heatmap.block_rows(), BLOCK_BYTES // (16 * max(1, width))))
    for start in range(0, height, step):
        block = torch.from_numpy(rgb[start : start + step, :, :3].copy()).float().div_(255)  # a block copy
        shown = overlay_rows(block, heat_rows(heatmap, start, start + step), opacity, colormap)
        out[start : start + step] = shown.mul_(255).round_().to(torch.uint8).numpy()
    return out


def _rgb(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-1] >= 3:
        return images[..., :3].float()
    return images[..., :1].float().expand(*images.shape[:-1], 3)
