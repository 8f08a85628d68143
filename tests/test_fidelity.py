"""The core reproduces RedRocket's reference preprocessing + model exactly, on awkward images.

The reference below is written out plainly from the published steps, independent of jtp_core.
"""

import numpy as np
import pytest
import torch
from checkpoints import build_timm_model
from PIL import Image

from jtp_core.families.pilot.preprocess import image_tensor_to_pils

SIZE = 384


def reference_input(image: Image.Image) -> torch.Tensor:
    image = image.convert("RGBA")
    w, h = image.size
    scale = min(SIZE / h, SIZE / w)
    if scale != 1:
        new_h, new_w = min(round(h * scale), SIZE), min(round(w * scale), SIZE)
        image = image.resize((new_w, new_h), Image.LANCZOS)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    rgb, a = x[:3], x[3:]
    x = rgb * a + (1 - a) * 0.5
    x = (x - 0.5) / 0.5
    dh, dw = SIZE - x.shape[1], SIZE - x.shape[2]
    out = torch.zeros(3, SIZE, SIZE)
    out[:, dh // 2 : dh // 2 + x.shape[1], dw // 2 : dw // 2 + x.shape[2]] = x
    return out


@pytest.fixture(scope="module")
def reference_model():
    # same seed as the conftest checkpoint: the same weights, built by timm directly
    model = build_timm_model("linear", 16, seed=0)
    return lambda pixels: torch.sigmoid(model(pixels))


def _noise(h, w, channels, seed, dtype=np.uint8, high=256):
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, high, size=shape, dtype=dtype)


def _image(array: np.ndarray, mode: str) -> Image.Image:
    little_endian = array.astype(array.dtype.newbyteorder("<"))  # the byte order Pillow's I;16 expects
    return Image.frombytes(mode, (array.shape[1], array.shape[0]), little_endian.tobytes())


def awkward_images() -> dict[str, Image.Image]:
    palette = _image(_noise(70, 50, 1, 1), "L").convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    transparent = _image(_noise(120, 90, 4, 7), "RGBA")
    transparent.putalpha(0)
    return {
        "rgb": _image(_noise(300, 500, 3, 2), "RGB"),
        "palette_with_transparency": palette,
        "la": _image(_noise(90, 60, 2, 3), "LA"),
        "cmyk": _image(_noise(64, 96, 4, 4), "CMYK"),
        "gray16": _image(_noise(80, 120, 1, 5, np.uint16, 65536), "I;16"),
        "one_pixel": _image(_noise(1, 1, 3, 6), "RGB"),
        "very_wide": _image(_noise(7, 1000, 3, 8), "RGB"),
        "very_tall": _image(_noise(900, 5, 4, 9), "RGBA"),
        "exactly_384": _image(_noise(384, 384, 3, 10), "RGB"),
        "fully_transparent": transparent,
    }


CASES = awkward_images()


@pytest.mark.parametrize("name", list(CASES))
def test_pil_input_matches_reference(name, tiny_tagger, reference_model):
    image = CASES[name]
    expected = reference_model(reference_input(image).unsqueeze(0))
    actual = tiny_tagger.predict_pils([image])
    assert torch.allclose(actual, expected, atol=1e-5, rtol=0), (actual - expected).abs().max()


def _as_image_and_mask(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """What ComfyUI's LoadImage hands over: RGB IMAGE [1,H,W,3] and MASK = 1 - alpha [1,H,W]."""
    rgba = torch.from_numpy(np.array(image.convert("RGBA"))).float() / 255
    return rgba[None, ..., :3], 1 - rgba[None, ..., 3]


@pytest.mark.parametrize("name", list(CASES))
def test_image_tensor_with_mask_matches_reference(name, tiny_tagger, reference_model):
    image = CASES[name]
    pixels, mask = _as_image_and_mask(image)
    expected = reference_model(reference_input(image).unsqueeze(0))
    actual = tiny_tagger.predict_image_tensor(pixels, mask)
    assert torch.allclose(actual, expected, atol=1e-5, rtol=0), (actual - expected).abs().max()


def test_batch_matches_one_by_one(tiny_tagger, reference_model):
    images = [CASES[name] for name in ("rgb", "la", "very_wide", "fully_transparent", "one_pixel")]
    expected = torch.cat([reference_model(reference_input(image).unsqueeze(0)) for image in images])
    assert torch.allclose(tiny_tagger.predict_pils(images, batch_size=2), expected, atol=1e-5, rtol=0)


def test_loadimage_placeholder_mask_means_opaque(tiny_tagger):
    """LoadImage gives a 64x64 zero MASK for images without alpha: it must not make them transparent."""
    image = CASES["rgb"]
    pixels, _ = _as_image_and_mask(image)
    with_placeholder = tiny_tagger.predict_image_tensor(pixels, torch.zeros(1, 64, 64))
    assert torch.allclose(with_placeholder, tiny_tagger.predict_pils([image]), atol=1e-6)


def test_one_mask_shared_by_a_batch_and_bad_mask_batch_refused(tiny_tagger):
    from jtp_core import ImageError

    pixels = torch.rand(3, 40, 30, 3)
    mask = torch.zeros(40, 30)
    mask[:, :15] = 1  # left half transparent
    shared = tiny_tagger.predict_image_tensor(pixels, mask, batch_size=2)
    each = tiny_tagger.predict_image_tensor(pixels, mask.expand(3, 40, 30))
    assert torch.allclose(shared, each, atol=1e-6)
    assert not torch.allclose(shared, tiny_tagger.predict_image_tensor(pixels), atol=1e-4)
    with pytest.raises(ImageError, match="MASK batch of 2 does not match IMAGE batch of 3"):
        tiny_tagger.predict_image_tensor(pixels, torch.zeros(2, 40, 30), batch_size=1)


def test_image_tensor_round_trip_is_lossless_for_8_bit_images():
    array = _noise(33, 17, 3, 11)
    pixels = torch.from_numpy(array).float()[None] / 255
    (back,) = image_tensor_to_pils(pixels)
    assert np.array_equal(np.asarray(back)[..., :3], array) and (np.asarray(back)[..., 3] == 255).all()
