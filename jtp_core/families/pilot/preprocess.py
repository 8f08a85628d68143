"""JTP's reference preprocessing, from PIL images or from ComfyUI-style IMAGE tensors.

Fit the longer side to 384 with Pillow's LANCZOS on RGBA, composite over 50% gray, normalise to [-1, 1],
then centre-pad to 384x384 with 0 (which is gray after normalisation).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ...errors import ImageError
from .architecture import INPUT_SIZE


def fit_size(height: int, width: int, size: int = INPUT_SIZE) -> tuple[int, int]:
    """Size (h, w) after scaling the longer side to ``size``; small images are scaled up too."""
    scale = min(size / height, size / width)
    if scale == 1:
        return height, width
    return min(round(height * scale), size), min(round(width * scale), size)


def fit_rgba(image: Image.Image, size: int = INPUT_SIZE) -> Image.Image:
    """Convert to RGBA and resize to fit ``size`` (Pillow premultiplies alpha for RGBA resizes)."""
    rgba = image.convert("RGBA")
    height, width = fit_size(rgba.height, rgba.width, size)
    if (height, width) != (rgba.height, rgba.width):
        rgba = rgba.resize((width, height), Image.LANCZOS)
    return rgba


def rgba_to_model_input(rgba: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """[..., 4, h, w] floats in [0, 1] → [..., 3, size, size]: gray composite, [-1, 1], centre padding."""
    rgb, alpha = rgba[..., :3, :, :], rgba[..., 3:4, :, :]
    rgb = rgb * alpha + (1 - alpha) * 0.5
    normalized = (rgb - 0.5) / 0.5
    pad_h, pad_w = size - normalized.shape[-2], size - normalized.shape[-1]
    top, left = pad_h // 2, pad_w // 2
    return F.pad(normalized, (left, pad_w - left, top, pad_h - top), value=0.0)


def preprocess_pil(image: Image.Image, size: int = INPUT_SIZE) -> torch.Tensor:
    """One PIL image of any mode → model input [3, size, size] float32."""
    try:
        fitted = fit_rgba(image, size)
    except (OSError, ValueError) as error:  # truncated data surfaces only when the pixels are decoded
        raise ImageError(f"could not decode image: {error}") from error
    pixels = torch.from_numpy(np.asarray(fitted, dtype=np.uint8).copy()).permute(2, 0, 1)
    return rgba_to_model_input(pixels.float().div(255), size)


def preprocess_pils(images: list[Image.Image], size: int = INPUT_SIZE) -> torch.Tensor:
    return torch.stack([preprocess_pil(image, size) for image in images])


def image_tensor_to_pils(images: torch.Tensor, mask: torch.Tensor | None = None) -> list[Image.Image]:
    """ComfyUI IMAGE [B,H,W,C] in [0,1] (+ optional MASK, 1 = transparent) → RGBA PIL images.

    ComfyUI's IMAGE comes from 8-bit files as value/255, so rounding back to 8 bits is lossless for them
    and lets the tensor path share Pillow's exact LANCZOS with the file path.
    """
    images = as_image_batch(images).detach().cpu()
    alpha = alpha_channel(images, mask, torch.device("cpu"))
    rgba = torch.cat([rgb_channels(images).float(), alpha.unsqueeze(-1)], dim=-1)
    as_bytes = (rgba.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [Image.fromarray(array) for array in as_bytes]  # uint8 [H,W,4] is RGBA


def preprocess_image_tensor(
    images: torch.Tensor, mask: torch.Tensor | None = None, size: int = INPUT_SIZE
) -> torch.Tensor:
    """ComfyUI IMAGE (+ MASK) → model input [B, 3, size, size]."""
    return preprocess_pils(image_tensor_to_pils(images, mask), size)


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
