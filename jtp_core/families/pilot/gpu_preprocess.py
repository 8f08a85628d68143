"""JTP preprocessing of ComfyUI IMAGE batches on the model's device, bit-exact with Pillow's LANCZOS fit.

Pillow resizes an RGBA image by premultiplying alpha in 8 bits, running a horizontal and a vertical pass
(in an order that depends on the sizes and the Pillow version: ``vertical_pass_first``) with fixed-point
filter weights (22 fractional bits), rounding to 8 bits after each pass, and dividing alpha out again.
Each pass here is one matrix product with a banded weight matrix built by Pillow's rules (support, centre
and bounds rounding, normalisation), so a batch of images of one size is resized by two matmuls on the
GPU. The weights are split into signed 8-bit digits, so every product and partial sum is an integer below
2**24: float32 (and TF32) matmuls add them exactly, and the result equals Pillow's integer arithmetic
instead of only approximating it.

Used for ComfyUI IMAGE batches on CUDA; the CPU path stays Pillow (jtp_core.families.pilot.preprocess).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import __version__ as _PILLOW_VERSION

from ..image_tensors import alpha_channel, as_image_batch, check_mask_batch, mask_slice, rgb_channels, to_8bit
from .architecture import INPUT_SIZE
from .preprocess import fit_size, rgba_to_model_input

PRECISION_BITS = 22  # Pillow: 32 bits - 8 for the result - 2 for overshoot of the negative lobes
LANCZOS_SUPPORT = 3.0
_DIGIT = 256  # weights are split into three signed base-256 digits
_EXACT_TAPS = (1 << 24) // (255 * 128)  # beyond this many taps a float32 sum could round: use float64
_PILLOW_MAJOR = int(_PILLOW_VERSION.split(".")[0])
_PIXELS_PER_STEP = 1 << 24  # images resized together: ~16 MP, i.e. ~1 GB of temporary tensors


def lanczos_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's integer LANCZOS weights [out_size, in_size] for resizing one axis (zero outside each band)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)  # downscaling widens the filter so every input pixel contributes
    support = LANCZOS_SUPPORT * filterscale
    inverse = 1.0 / filterscale
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as the C cast does
        stop = min(int(center + support + 0.5), in_size)
        taps = _lanczos((np.arange(first, stop) - center + 0.5) * inverse)
        total = taps.sum()
        if total != 0.0:
            taps = taps / total
        scaled = taps * (1 << PRECISION_BITS)
        weights[out, first:stop] = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5))
    return weights


def _lanczos(x: np.ndarray) -> np.ndarray:
    # Pillow's truncated sinc: sinc(x) * sinc(x / 3) on [-3, 3); np.sinc is sin(pi x) / (pi x)
    return np.where((x >= -LANCZOS_SUPPORT) & (x < LANCZOS_SUPPORT), np.sinc(x) * np.sinc(x / 3), 0.0)


@lru_cache(maxsize=32)
def _pass_weights(in_size: int, out_size: int) -> torch.Tensor:
    """[in_size, 3 * out_size] float32: the integer weights as three signed base-256 digits, side by side.

    Pixels (0..255) times digits (-128..127) summed over a band stay exact integers in float32 and TF32.
    Very wide bands (a downscale of more than ~80x) are returned as float64 integers instead.
    """
    weights = lanczos_coefficients(in_size, out_size)
    taps = int((weights != 0).sum(axis=1).max())
    if taps > _EXACT_TAPS:
        return torch.from_numpy(weights.T.astype(np.float64))
    low = (weights + _DIGIT // 2) % _DIGIT - _DIGIT // 2
    rest = (weights - low) // _DIGIT
    middle = (rest + _DIGIT // 2) % _DIGIT - _DIGIT // 2
    high = (rest - middle) // _DIGIT
    return torch.from_numpy(np.concatenate([high, middle, low], axis=0).T.astype(np.float32))


def _resample_last_axis(pixels: torch.Tensor, out_size: int) -> torch.Tensor:
    """One Pillow pass along the last axis of integer pixels [..., in] → [..., out], rounded and clipped."""
    weights = _pass_weights(pixels.shape[-1], out_size).to(pixels.device)
    sums = torch.matmul(pixels.to(weights.dtype), weights)
    if weights.dtype == torch.float64:
        total = sums.round().int()
    else:
        high, middle, low = sums.round().int().split(out_size, dim=-1)
        total = (high * _DIGIT + middle) * _DIGIT + low
    rounded = torch.div(total + (1 << (PRECISION_BITS - 1)), 1 << PRECISION_BITS, rounding_mode="floor")
    return rounded.clamp_(0, 255)


def resize_rgba(rgba: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's ``Image.resize((width, height), LANCZOS)`` of RGBA images, batched.

    ``rgba``: integer tensor [B, 4, H, W] with values 0..255; returns int32 [B, 4, height, width].
    Sums stay in int32 as in Pillow (255 * 1.3 * 2**22 < 2**31).
    """
    if rgba.shape[-2:] == (height, width):
        return rgba.int()
    pixels = _premultiply(rgba.int())
    if vertical_pass_first(rgba.shape[-2], rgba.shape[-1], height, width):
        pixels = _resample_rows(pixels, height)
        pixels = _resample_last_axis(pixels, width) if pixels.shape[-1] != width else pixels
    else:
        pixels = _resample_last_axis(pixels, width) if pixels.shape[-1] != width else pixels
        pixels = _resample_rows(pixels, height)
    return _unpremultiply(pixels)


def vertical_pass_first(in_height: int, in_width: int, height: int, width: int) -> bool:
    """The order of Pillow's two 8-bit passes, which changes the rounding of the result.

    Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as
    the width does (to make the horizontal pass cheaper); Pillow 12 and older always go horizontal first.
    """
    shrink = in_height - height
    return _PILLOW_MAJOR >= 13 and shrink > 0 and shrink > 2 * (in_width - width)


def _resample_rows(pixels: torch.Tensor, height: int) -> torch.Tensor:
    if pixels.shape[-2] == height:
        return pixels
    return _resample_last_axis(pixels.transpose(-1, -2), height).transpose(-1, -2)


def _premultiply(rgba: torch.Tensor) -> torch.Tensor:
    # Pillow's RGBA → RGBa: colour * alpha / 255 rounded with its exact integer MULDIV255
    alpha = rgba[:, 3:4]
    product = rgba[:, :3] * alpha + 128
    return torch.cat([((product >> 8) + product) >> 8, alpha], dim=1)


def _unpremultiply(rgba: torch.Tensor) -> torch.Tensor:
    # Pillow's RGBa → RGBA: 255 * colour // alpha, clipped; alpha 0 and 255 leave the colour as it is
    alpha = rgba[:, 3:4]
    divided = torch.div(255 * rgba[:, :3], alpha.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    keep = (alpha == 0) | (alpha == 255)
    return torch.cat([torch.where(keep, rgba[:, :3], divided), alpha], dim=1)


def rgba_batch_to_model_input(rgba: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Integer RGBA [B, 4, h, w] (0..255) → [B, 3, size, size]: gray composite, [-1, 1], centre padding."""
    return rgba_to_model_input(rgba.float() / 255, size)


def preprocess_image_batch(
    images: torch.Tensor,
    mask: torch.Tensor | None = None,
    size: int = INPUT_SIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] (+ MASK, 1 = transparent) → model input [B, 3, size, size] on ``device``.

    Same result as ``preprocess.preprocess_image_tensor`` (which goes through Pillow on the CPU), computed
    where the model is.
    """
    device = torch.device(device) if device is not None else images.device
    images = as_image_batch(images)
    batch, height, width, _ = images.shape
    check_mask_batch(mask, batch)
    step = max(1, _PIXELS_PER_STEP // (height * width))  # bounds the int32/float32 copies on the device
    parts = []
    for start in range(0, batch, step):
        part_mask = mask_slice(mask, start, start + step)
        part = images[start : start + step].to(device, non_blocking=True)
        parts.append(_preprocess_part(part, part_mask, size, device))
    return torch.cat(parts)


def _preprocess_part(images: torch.Tensor, mask: torch.Tensor | None, size: int, device: torch.device) -> torch.Tensor:
    _, height, width, _ = images.shape
    alpha = alpha_channel(images, mask, device)
    rgba = torch.cat([rgb_channels(images).float(), alpha.unsqueeze(-1)], dim=-1).permute(0, 3, 1, 2)
    as_bytes = to_8bit(rgba).int()  # 8-bit, as the Pillow route rounds it
    fitted = resize_rgba(as_bytes, *fit_size(height, width, size))
    return rgba_batch_to_model_input(fitted, size)
