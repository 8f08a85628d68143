"""Opt-in fast JPEG decoding: let libjpeg decode at 1/2, 1/4 or 1/8 scale (Pillow's draft mode).

A 4 MP JPEG decoded at 1/4 scale costs a fraction of the full decode, and the model only needs the image
fitted to 384 px anyway. The scale is the smallest one whose result is still at least the fitted size of the
reference preprocessing, so the LANCZOS fit that follows always downsamples (never upsamples a too-small
draft) and lands on exactly the reference's fitted size and padding. Scores still move a little: libjpeg's
DCT-domain downscale is not LANCZOS. That is why this is off by default everywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ...errors import ImageError
from ...inference.images import open_image, open_unloaded
from .preprocess import fit_size, preprocess_pil


def draft_request(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) to ask ``Image.draft`` for: the reference's fitted size of a width×height image.

    Pillow picks the largest DCT scale s in 8, 4, 2, 1 with s <= original // requested on both sides, and the
    decoded size is ceil(original / s), so it is never below what is asked for.
    """
    fitted_height, fitted_width = fit_size(height, width, size)
    return fitted_width, fitted_height


def open_for_model(path: str | Path, size: int, fast_jpeg: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """Open and decode an image; with ``fast_jpeg`` a JPEG is decoded at the smallest DCT scale that is still
    at least its fitted size. Returns the image and the file's own (width, height)."""
    if not fast_jpeg:
        image = open_image(path)
        return image, image.size
    image = open_unloaded(path)  # the pixel limit applies here too
    try:
        with image:
            original = image.size
            if image.format == "JPEG":  # draft() exists on other formats too, but only JPEG decodes faster
                image.draft("RGB", draft_request(*original, size))
            image.load()
            return image, original
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error


def load_for_model(path: str | Path, size: int, fast_jpeg: bool = False) -> Image.Image:
    """The decoded image the reference fit starts from: the file itself, or with ``fast_jpeg`` a JPEG's draft
    already fitted to the size the full image would have been fitted to (so every route agrees on it)."""
    image, (width, height) = open_for_model(path, size, fast_jpeg)
    if image.size == (width, height):
        return image
    fitted_height, fitted_width = fit_size(height, width, size)
    try:
        image = image.convert("RGBA")
        if image.size != (fitted_width, fitted_height):
            image = image.resize((fitted_width, fitted_height), Image.LANCZOS)
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: could not decode image: {error}") from error
    return image


def preprocess_file(path: str | Path, size: int, fast_jpeg: bool = False) -> torch.Tensor:
    """Image file → model input [3, size, size]; exactly the reference unless ``fast_jpeg`` (JPEGs only)."""
    # a fitted draft has its longer side at ``size``, so the fit inside preprocess_pil leaves it as it is
    return preprocess_pil(load_for_model(path, size, fast_jpeg), size)
