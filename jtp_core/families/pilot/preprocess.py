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
from ..image_tensors import alpha_channel, as_image_batch, rgb_channels, to_8bit
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
    as_bytes = to_8bit(rgba).numpy()
    return [Image.fromarray(array) for array in as_bytes]  # uint8 [H,W,4] is RGBA


def preprocess_image_tensor(
    images: torch.Tensor, mask: torch.Tensor | None = None, size: int = INPUT_SIZE
) -> torch.Tensor:
    """ComfyUI IMAGE (+ MASK) → model input [B, 3, size, size]."""
    return preprocess_pils(image_tensor_to_pils(images, mask), size)
