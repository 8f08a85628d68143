"""The device-side LANCZOS fit against Pillow itself, run on the CPU (the code is the same on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from jtp_core.families.pilot.gpu_preprocess import lanczos_coefficients, preprocess_image_batch, resize_rgba
from jtp_core.families.pilot.preprocess import fit_rgba, fit_size, preprocess_image_tensor

# (height, width): 1x1, very wide and tall, exactly 384², upscales, one-axis-only, large downscales;
# (2000, 5) and (1027, 513) take Pillow 13's vertical-pass-first order
AWKWARD = [
    (1, 1), (1, 270), (7, 2000), (2000, 5), (384, 384), (383, 384), (100, 60), (37, 384), (513, 1027), (1027, 513),
]


def _random_rgba(height: int, width: int, seed: int, transparent: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    if transparent:  # hard edges, fully transparent and partly transparent areas
        pixels[: height // 2, :, 3] = 0
        pixels[height // 2 :, : width // 3, 3] = rng.integers(1, 255, size=pixels[height // 2 :, : width // 3, 3].shape)
    else:
        pixels[..., 3] = 255
    return pixels


def _pillow_fit(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(fit_rgba(Image.fromarray(pixels, mode="RGBA")))


def _device_fit(pixels: np.ndarray) -> np.ndarray:
    height, width = fit_size(*pixels.shape[:2])
    batch = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)
    return resize_rgba(batch, height, width)[0].permute(1, 2, 0).numpy().astype(np.uint8)


@pytest.mark.parametrize(("height", "width"), AWKWARD)
def test_fit_equals_pillow_byte_for_byte(height, width):
    pixels = _random_rgba(height, width, seed=height * 7919 + width)
    expected, got = _pillow_fit(pixels), _device_fit(pixels)
    assert got.shape == expected.shape
    # exact integer emulation: no pixel differs at all (the issue asks for within 1/255)
    assert np.array_equal(got, expected), f"max diff {np.abs(got.astype(int) - expected).max()}"


def test_fit_of_smooth_opaque_photo_like_image_equals_pillow():
    yy, xx = np.mgrid[0:900, 0:1300]
    rgb = np.stack([(xx * 255 // 1299), (yy * 255 // 899), ((xx + yy) % 256)], axis=-1)
    pixels = np.concatenate([rgb, np.full((900, 1300, 1), 255)], axis=-1).astype(np.uint8)
    assert np.array_equal(_device_fit(pixels), _pillow_fit(pixels))


def test_coefficients_follow_pillow_fixed_point_rules():
    weights = lanczos_coefficients(1000, 384)
    # each row sums to 1.0 in 22-bit fixed point (up to one unit of rounding per tap)
    sums = weights.sum(axis=1)
    taps = (weights != 0).sum(axis=1)
    assert np.all(np.abs(sums - (1 << 22)) <= taps)
    # LANCZOS has negative lobes, and a downscale widens the band to 3 * scale on each side
    assert weights.min() < 0
    assert taps.max() <= 2 * int(np.ceil(3 * 1000 / 384)) + 1


def test_batch_of_one_size_is_resized_like_each_image_alone():
    images = np.stack([_random_rgba(50, 80, seed=s) for s in range(3)])
    batch = resize_rgba(torch.from_numpy(images).permute(0, 3, 1, 2), *fit_size(50, 80))
    for index, pixels in enumerate(images):
        assert np.array_equal(batch[index].permute(1, 2, 0).numpy().astype(np.uint8), _pillow_fit(pixels))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (30, 700), (384, 384), (300, 200)])
def test_image_batch_with_mask_matches_the_pillow_route(height, width):
    torch.manual_seed(height + width)
    images = torch.randint(0, 256, (2, height, width, 3)).float() / 255
    mask = (torch.rand(2, height, width) > 0.6).float() * torch.rand(2, height, width)
    expected = preprocess_image_tensor(images, mask)
    got = preprocess_image_batch(images, mask, device="cpu")
    assert got.shape == expected.shape == (2, 3, 384, 384)
    # model inputs are in [-1, 1]: 1/255 of the [0, 1] range is 2/255 here
    assert (got - expected).abs().max() <= 2 / 255 + 1e-6


def test_shared_small_mask_and_grayscale_image_match_the_pillow_route():
    images = torch.rand(3, 40, 90, 1)
    mask = torch.zeros(64, 64)  # LoadImage's mask for an image without alpha
    mask[:10] = 1.0
    expected = preprocess_image_tensor(images, mask)
    got = preprocess_image_batch(images, mask, device="cpu")
    assert (got - expected).abs().max() <= 2 / 255 + 1e-6


def test_fully_transparent_image_becomes_flat_gray():
    images = torch.rand(1, 200, 100, 3)
    got = preprocess_image_batch(images, torch.ones(1, 200, 100), device="cpu")
    assert got.abs().max() == 0  # gray is 0 after normalisation, inside the image and in the padding


def test_large_batches_are_resized_in_steps_with_their_own_masks(monkeypatch):
    import jtp_core.families.pilot.gpu_preprocess as gpu

    images = torch.rand(5, 30, 50, 3)
    mask = torch.rand(5, 30, 50)
    whole = preprocess_image_batch(images, mask, device="cpu")
    monkeypatch.setattr(gpu, "_PIXELS_PER_STEP", 2 * 30 * 50)  # two images per step: steps of 2, 2, 1
    assert torch.equal(preprocess_image_batch(images, mask, device="cpu"), whole)


def test_mask_batch_that_fits_no_image_is_an_error():
    from jtp_core.errors import ImageError

    with pytest.raises(ImageError, match="MASK batch of 2 does not match IMAGE batch of 3"):
        preprocess_image_batch(torch.rand(3, 20, 20, 3), torch.zeros(2, 20, 20), device="cpu")
