"""ComfyUI IMAGE and MASK tensors as every family reads them: batches, colour, and transparency.

IMAGE is float [B,H,W,C] in [0,1] (C = 1, 3 or 4); MASK is [B,H,W] or [H,W] with 1 = transparent, as LoadImage
gives it (its 64x64 all-zero placeholder for images without alpha means opaque; a mask of another size is
stretched to the image; one mask can serve a whole batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ImageError


def to_8bit(values: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8, rounded: lossless for IMAGEs ComfyUI loaded from 8-bit files (value / 255)."""
    return (values.float().clamp(0, 1) * 255).round().to(torch.uint8)


def check_mask_batch(mask: torch.Tensor | None, batch: int) -> None:
    """A MASK goes with every image (batch 1 or [H,W]) or one per image."""
    if mask is not None and mask.ndim == 3 and mask.shape[0] not in (1, batch):
        raise ImageError(f"MASK batch of {mask.shape[0]} does not match IMAGE batch of {batch}")


def mask_slice(mask: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """The part of a MASK that goes with images[start:stop]; a single mask goes with every image."""
    if mask is None or mask.ndim == 2 or mask.shape[0] == 1:
        return mask
    return mask[start:stop]


def as_image_batch(images: torch.Tensor) -> torch.Tensor:
    """An IMAGE tensor as [B,H,W,C] with C in 1, 3, 4, or a clear error."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ImageError(f"expected an IMAGE tensor [B,H,W,C] with C in 1, 3, 4; got shape {list(images.shape)}")
    if images.shape[0] == 0:
        raise ImageError("the IMAGE batch is empty")
    return images


def rgb_channels(images: torch.Tensor) -> torch.Tensor:
    """[B,H,W,3] colour of an IMAGE batch (gray images repeat their one channel)."""
    return images[..., :3] if images.shape[-1] >= 3 else images[..., :1].expand(-1, -1, -1, 3)


def alpha_channel(images: torch.Tensor, mask: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Alpha [B,H,W] on ``device``: 1 − MASK when given (resized to the image, one mask shared by the batch
    if needed), else the image's own 4th channel, else opaque."""
    batch, height, width, channels = images.shape
    if mask is None:
        if channels == 4:
            return images[..., 3].float().to(device)
        return torch.ones(batch, height, width, device=device)
    mask = mask.detach().to(device).float()
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise ImageError(f"expected a MASK [B,H,W] or [H,W]; got shape {list(mask.shape)}")
    check_mask_batch(mask, batch)
    if mask.shape[1:] != (height, width):
        # LoadImage gives a 64x64 zero mask for images without alpha; any other size is stretched to fit
        mask = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return (1 - mask.clamp(0, 1)).expand(batch, height, width)
