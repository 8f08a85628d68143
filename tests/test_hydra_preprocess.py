"""NaFlex preprocessing for JTP-3 Hydra / Hydra 3.5 (jtp_core.families.hydra.preprocess / resize).

References are written here from the published facts (JTP3_FACTS.md §6): the size rule, the MKS2013 kernel
evaluated directly, the Pillow release steps, and the packing layout. libvips itself (pyvips) is the reference
for bit-exactness when it is installed; those tests skip with a message otherwise.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from jtp_core.errors import ImageError
from jtp_core.families.hydra import resize as R
from jtp_core.families.hydra.preprocess import NaFlexPreprocessor, map_to_image

RNG = np.random.default_rng(1234)


def smooth_image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Photo-like test content: a coarse random field, bilinearly enlarged, plus noise (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (channels, height // 8 + 2, width // 8 + 2)).astype(np.float32))
    field = torch.nn.functional.interpolate(coarse[None], size=(height, width), mode="bilinear")[0]
    field = field.permute(1, 2, 0).numpy() + rng.normal(0, 12, (height, width, channels))
    return np.clip(field, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- target size

SIZE_TABLE = [  # input w x h -> output w x h (JTP3_FACTS §6)
    ((1024, 1024), (512, 512)),
    ((1920, 1080), (672, 384)),
    ((4000, 3000), (576, 432)),
    ((3000, 1000), (864, 288)),
    ((500, 300), (496, 288)),
    ((100, 5000), (80, 3264)),
    ((15, 15), (16, 16)),
]


def reference_size(h: int, w: int, max_seq: int = 1024, patch: int = 16, eps: float = 1e-5) -> tuple[int, int]:
    my, mx = max(h // patch, 1), max(w // patch, 1)
    if my * mx <= max_seq:
        return patch * my, patch * mx
    lo, hi, best = eps, 1.0, None
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        gy, gx = min(math.ceil(h * mid / patch), my), min(math.ceil(w * mid / patch), mx)
        if gy * gx > max_seq:
            hi = mid
        else:
            lo, best = mid, (gy, gx)
            if gy * gx == max_seq:
                break
    return patch * best[0], patch * best[1]


@pytest.mark.parametrize(("size_in", "size_out"), SIZE_TABLE)
def test_size_table(size_in, size_out):
    (w, h), (ow, oh) = size_in, size_out
    assert R.size_for_seq(h, w) == (oh, ow)
    assert NaFlexPreprocessor().grid(h, w) == (oh // 16, ow // 16)


def test_size_rule_matches_reference_on_random_sizes():
    for _ in range(300):
        h, w = (int(v) for v in RNG.integers(1, 6000, 2))
        max_seq = int(RNG.choice([64, 256, 729, 1024, 2048]))
        out = R.size_for_seq(h, w, max_seq)
        assert out == reference_size(h, w, max_seq)
        assert (out[0] // 16) * (out[1] // 16) <= max_seq
        assert out[0] <= max(h, 16) and out[1] <= max(w, 16)  # never upscaled beyond one patch


def test_sequence_length_bounds():
    assert R.size_for_seq(4000, 4000, 64) == (128, 128)
    assert R.size_for_seq(4000, 4000, 2048) == reference_size(4000, 4000, 2048)
    for bad in (63, 2049, 0, 1024.0):
        with pytest.raises(ValueError, match="max_seq"):
            R.size_for_seq(100, 100, bad)
        with pytest.raises(ValueError, match="max_seq"):
            NaFlexPreprocessor(max_seq=bad)


def test_image_too_large_for_budget():
    with pytest.raises(ImageError, match="too large"):
        R.size_for_seq(16, 200_000_000, 64)


# --------------------------------------------------------------------------------------------- MKS2013 / Lanczos


def mks2013(x: float) -> float:
    x = abs(x)
    if x <= 0.5:
        return 17 / 16 - 7 * x * x / 4
    if x <= 1.5:
        return (4 * x * x - 11 * x + 7) / 4
    if x <= 2.5:
        return -((x - 2.5) ** 2) / 8
    return 0.0


def direct_reduce(values: np.ndarray, out_len: int, axis: int, kernel) -> np.ndarray:
    """Float reference: each output pixel centre mapped into the input, the kernel stretched by the factor."""
    values = np.moveaxis(values.astype(np.float64), axis, 0)
    n = values.shape[0]
    scale = n / out_len
    out = np.empty((out_len, *values.shape[1:]))
    for i in range(out_len):
        centre = (i + 0.5) * scale - 0.5
        taps = np.arange(math.floor(centre - 3 * scale) - 1, math.ceil(centre + 3 * scale) + 2)
        weights = np.array([kernel((t - centre) / scale) for t in taps])
        weights /= weights.sum()
        out[i] = np.tensordot(weights, values[np.clip(taps, 0, n - 1)], axes=1)
    return np.moveaxis(out, 0, axis)


def libvips_reduce(values: np.ndarray, out_len: int, axis: int, kernel, n_points: int) -> np.ndarray:
    """Reference for one libvips reduce without box pre-shrink, written from the kernel formula: output i samples
    at Y = (i + 0.5) * r - 0.5 - (extra - 1) / 2 with the phase rounded to 1/64 pixel, weights normalised to sum
    1 then truncated to 12-bit fixed point, edges repeated, (sum + 2048) >> 12."""
    values = np.moveaxis(values.astype(np.int64), axis, 0)
    n = values.shape[0]
    r = n / out_len
    offset = (1 + out_len * r - n) / 2 - 1
    out = np.empty((out_len, *values.shape[1:]), np.int64)
    for i in range(out_len):
        y = (i + 0.5) * r - 0.5 - offset
        phase = ((int(y * 128) & 127) + 1) // 2 / 64
        taps = int(y) - (n_points + 1) // 2 + 1 + np.arange(n_points)
        weights = np.array([kernel((k - (phase + n_points / 2 - 1)) / r) for k in range(n_points)])
        weights = np.trunc(weights / weights.sum() * 4096).astype(np.int64)
        out[i] = (np.tensordot(weights, values[np.clip(taps, 0, n - 1)], axes=1) + 2048) >> 12
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize(("h", "w", "oh", "ow"), [(200, 150, 64, 48), (97, 131, 48, 80), (45, 90, 32, 32)])
def test_mks2013_resize_matches_direct_kernel(h, w, oh, ow):
    # factors below 2 x gap (3.0): no box pre-shrink, the kernel alone
    image = smooth_image(h, w, seed=h)
    lut = [round(c * 257 / 12.92) if c <= 10 else round(((c + 14.025) / 269.025) ** 2.4 * 65535) for c in range(256)]
    linear = np.array(lut)[image]
    n_v, n_h = 2 * round(3 * h / oh) + 1, 2 * round(3 * w / ow) + 1
    expected = np.clip(
        libvips_reduce(np.clip(libvips_reduce(linear, oh, 0, mks2013, n_v), 0, 65535), ow, 1, mks2013, n_h), 0, 65535
    )
    got = R.vips_resize(torch.from_numpy(linear.astype(np.int32)), oh, ow, "mks2013", "ushort").numpy()
    assert np.array_equal(got, expected)
    # and close to the continuous filter: 12-bit truncation loses at most n / 4096 of the signal
    continuous = np.clip(direct_reduce(direct_reduce(linear, oh, 0, mks2013), ow, 1, mks2013), 0, 65535)
    assert np.percentile(np.abs(got - continuous), 99) <= (n_v + n_h) / 4096 * 65535


def test_lanczos3_resize_matches_direct_kernel():
    def lanczos3(x: float) -> float:
        return float(np.sinc(x) * np.sinc(x / 3)) if abs(x) < 3 else 0.0

    image = smooth_image(120, 160, seed=7)
    expected = direct_reduce(direct_reduce(image, 64, 0, lanczos3), 96, 1, lanczos3)
    got = R.lanczos3_resize(torch.from_numpy(image), 64, 96).numpy().astype(np.float64)
    diff = np.abs(got - np.clip(expected, 0, 255))
    assert diff.max() <= 3 and diff.mean() < 0.6  # 12-bit weights, 1/64-pixel phases, two 8-bit roundings


def test_box_preshrink_then_kernel():
    # 8x smaller: libvips box-averages by floor(8 / 3) = 2 first, then applies the kernel for the residual 4x
    image = smooth_image(256, 32, 1, seed=3)[..., 0].astype(np.int64) * 200
    box = (image.reshape(128, 2, 32).sum(1) + 1) // 2  # ushort box shrink rounds half up
    expected = libvips_reduce(box, 32, 0, mks2013, 2 * 12 + 1)
    got = R.vips_resize(torch.from_numpy(image[..., None].astype(np.int32)), 32, 32, "mks2013", "ushort").numpy()
    assert np.array_equal(got[..., 0], expected)
    no_box = libvips_reduce(image, 32, 0, mks2013, 2 * 24 + 1)
    assert not np.array_equal(got[..., 0], no_box)  # the pre-shrink is visible: this test can tell


def test_linear_luts():
    to_linear = R.srgb_to_linear16_lut()
    assert to_linear[0] == 0 and to_linear[255] == 65535 and to_linear[10] == round(10 * 257 / 12.92)
    back = R.linear16_to_srgb_lut()
    assert torch.equal(back[to_linear.long()], torch.arange(256, dtype=torch.uint8))


def _pyvips():
    try:
        import pyvips as module  # noqa: PLC0415
    except (ImportError, OSError) as error:
        pytest.skip(f"pyvips not installed (pip install pyvips pyvips-binary): {error}")
    module.cache_set_max(0)
    return module


AWKWARD = [
    (1080, 1920),
    (777, 1234),
    (1025, 767),
    (600, 1801),
    (3001, 100),
    (31, 47),
    (15, 15),
    (10, 900),
    (900, 7),
    (3, 3),
    (1, 1),
    (40, 12),
]


@pytest.mark.parametrize(("h", "w"), AWKWARD)
def test_resize_port_is_bit_exact_with_libvips(h, w):
    vips = _pyvips()
    image = smooth_image(h, w, seed=h * w)
    oh, ow = R.size_for_seq(h, w)
    source = vips.Image.new_from_array(image).copy(interpretation="srgb")
    lut_in = vips.Image.new_from_array(R.srgb_to_linear16_lut().numpy().astype(np.uint16))
    lut_out = vips.Image.new_from_array(R.linear16_to_srgb_lut().numpy())
    mks = source.maplut(lut_in).resize(ow / w, vscale=oh / h, kernel="mks2013", gap=3.0).maplut(lut_out).numpy()
    lanczos = source.resize(ow / w, vscale=oh / h, kernel="lanczos3", gap=3.0).numpy()
    assert np.array_equal(R.mks2013_linear_resize(torch.from_numpy(image), oh, ow).numpy(), mks)
    assert np.array_equal(R.lanczos3_resize(torch.from_numpy(image), oh, ow).numpy(), lanczos)


# --------------------------------------------------------------------------------------------- Pillow pipeline


def release_reference(data: bytes, max_seq: int = 1024) -> np.ndarray:
    """JTP-3 release steps from the facts: load, EXIF transpose, ICC -> sRGB, RGBa if transparent, LANCZOS gap 3."""
    image = Image.open(io.BytesIO(data))
    image.load()
    image = ImageOps.exif_transpose(image)
    icc = image.info.get("icc_profile")
    if icc:
        mode = "RGBA" if image.mode in ("RGBA", "P") and "A" in image.convert("RGBA").getbands() else image.mode
        image = ImageCms.profileToProfile(
            image.convert(mode),
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            flags=ImageCms.Flags.HIGHRESPRECALC | ImageCms.Flags.BLACKPOINTCOMPENSATION,
        )
    if image.mode == "I;16":
        image = Image.fromarray(np.floor(np.asarray(image) / 257 + 0.5).astype(np.uint8), "L")
    transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA").convert("RGBa") if transparent else image.convert("RGB")
    oh, ow = reference_size(image.height, image.width, max_seq)
    if image.size != (ow, oh):
        image = image.resize((ow, oh), Image.LANCZOS, reducing_gap=3.0)
    return np.asarray(image)[..., :3]


def pillow_cases() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees for display
    palette = Image.fromarray(smooth_image(300, 520, seed=5)).quantize(32)
    rgba = smooth_image(410, 600, 4, seed=6)
    rgba[:50, :, 3] = 0  # fully transparent band: must come out black
    grey16 = (smooth_image(300, 200, 1, seed=8)[..., 0].astype(np.uint16) * 257 + 77).astype(np.uint16)
    return {
        "exif_jpeg": encode(Image.fromarray(smooth_image(500, 760, seed=4)), "JPEG", quality=92, exif=exif.tobytes()),
        "palette_trns": encode(palette, "PNG", transparency=3),
        "rgba": encode(Image.fromarray(rgba), "PNG"),
        "la": encode(Image.fromarray(smooth_image(240, 330, 2, seed=9), "LA"), "PNG"),
        "grey16": encode(Image.fromarray(grey16), "PNG"),
        "one_pixel": encode(Image.fromarray(smooth_image(1, 1, seed=10)), "PNG"),
        "thin_tall": encode(Image.fromarray(smooth_image(3000, 6, seed=11)), "PNG"),
        "thin_wide": encode(Image.fromarray(smooth_image(3, 2500, seed=12)), "PNG"),
    }


@pytest.mark.parametrize("name", list(pillow_cases()))
def test_pillow_pipeline_matches_release_steps(name):
    data = pillow_cases()[name]
    expected = release_reference(data)
    got = NaFlexPreprocessor().pixels_from_pil(Image.open(io.BytesIO(data)))
    assert got.shape == expected.shape
    tolerance = 1 if name == "grey16" else 0  # 16 -> 8 bit: lcms' rounding vs round(v / 257) on a few values
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance


def test_pillow_pipeline_details():
    cases = pillow_cases()
    rotated = NaFlexPreprocessor().pixels_from_pil(Image.open(io.BytesIO(cases["exif_jpeg"])))
    assert rotated.shape == (*reference_size(760, 500), 3)  # 760x500 stored, shown 500 wide x 760 high
    assert rotated.shape[0] > rotated.shape[1]
    rgba = NaFlexPreprocessor().pixels_from_pil(Image.open(io.BytesIO(cases["rgba"])))
    assert rgba[:40].max() == 0  # transparent rows composite to black


def test_pillow_pipeline_converts_icc_to_srgb():
    from jtp_core.families.hydra.preprocess import libvips_srgb_profile

    # an RGB profile with gamma 1.8 instead of 2.4: converting it to sRGB visibly changes the values
    other_srgb = libvips_srgb_profile().replace(
        b"para\0\0\0\0\0\3\0\0\0\2\x66\x69", b"para\0\0\0\0\0\3\0\0\0\1\xcc\xcd"
    )
    assert other_srgb != libvips_srgb_profile()
    image = Image.fromarray(smooth_image(200, 300, seed=13))
    data = encode(image, "PNG", icc_profile=other_srgb)
    got = NaFlexPreprocessor().pixels_from_pil(Image.open(io.BytesIO(data)))
    assert np.array_equal(got, release_reference(data))
    untouched = release_reference(encode(image, "PNG"))
    assert not np.array_equal(got, untouched)


# --------------------------------------------------------------------------------------------- libvips pipeline


def test_vips_pipeline_flattens_onto_background_before_resizing():
    rgba = np.zeros((64, 96, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :48, 3] = 255
    rgba[:, 48:, 3] = 128
    for background, fill in (("black", 0), ("grey", 127), ("white", 255)):
        pre = NaFlexPreprocessor(pipeline="vips", background=background, resize="mks2013-linear")
        pixels = pre.pixels_from_pil(Image.fromarray(rgba))
        assert pixels.shape == (64, 96, 3)  # already whole patches: no resize
        assert (pixels[:, :48] == 200).all()
        assert (pixels[:, 48:] == (200 * 128 + fill * 127) // 255).all()


@pytest.mark.parametrize("resize", ["mks2013-linear", "lanczos"])
def test_vips_pipeline_bit_exact_with_libvips_files(resize):
    vips = _pyvips()
    from jtp_core.families.hydra.preprocess import pyvips_pixels

    exif = Image.Exif()
    exif[0x0112] = 8
    files = dict(pillow_cases())
    files.pop("grey16")  # Pillow decodes 16-bit files itself; libvips rounds 16->8 (+-1 on a few values)
    files["exif8_jpeg"] = encode(Image.fromarray(smooth_image(420, 700, seed=14)), "JPEG", exif=exif.tobytes())
    p3 = vips.Image.new_from_array(smooth_image(300, 420, seed=15)).copy(interpretation="srgb")
    files["p3_icc"] = p3.icc_transform("p3", intent="relative").pngsave_buffer()
    pre = NaFlexPreprocessor(pipeline="vips", background="grey", resize=resize)
    for name, data in files.items():
        expected = pyvips_pixels(data, 1024, 127, resize)
        got = pre.pixels_from_pil(Image.open(io.BytesIO(data)))
        assert got.shape == expected.shape, name
        assert np.array_equal(got, expected), (name, np.abs(got.astype(int) - expected).max())


def test_from_metadata():
    jtp3 = NaFlexPreprocessor.from_metadata({"modelspec.architecture": "naflexvit_so400m_patch16_siglip+rr_hydra"})
    assert jtp3.pipeline == "pillow"
    h35 = NaFlexPreprocessor.from_metadata(
        {
            "modelspec.architecture": "naflexvit_so400m_patch16_siglip+rr_hydra2",
            "classifier.background": "white",
            "classifier.resize": "mks2013-linear",
        },
        max_seq=512,
    )
    assert (h35.pipeline, h35.background, h35.resize, h35.max_seq) == ("vips", "white", "mks2013-linear", 512)
    with pytest.raises(ValueError, match="classifier.background"):
        NaFlexPreprocessor.from_metadata({"modelspec.architecture": "x+rr_hydra2", "classifier.background": "red"})
    with pytest.raises(ValueError, match="Pillow"):
        NaFlexPreprocessor(pipeline="pillow", background="grey")


# --------------------------------------------------------------------------------------------- packing


@pytest.mark.parametrize("pipeline", ["pillow", "vips"])
def test_packing_layout(pipeline):
    h, w = 48, 80  # already whole patches: pixels pass through unchanged
    pixels = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = NaFlexPreprocessor(max_seq=64, pipeline=pipeline).from_pil(Image.fromarray(pixels))
    assert out["patches"].shape == (64, 768) and out["patches"].dtype == torch.uint8
    assert out["coords"].shape == (64, 2) and out["coords"].dtype == torch.int32
    assert out["valid"].shape == (64,) and out["valid"].dtype == torch.bool
    gh, gw = 3, 5
    for t in range(64):
        if t < gh * gw:
            gy, gx = divmod(t, gw)
            expected = [pixels[gy * 16 + py, gx * 16 + px, c] for py in range(16) for px in range(16) for c in range(3)]
            assert out["patches"][t].tolist() == expected
            assert out["coords"][t].tolist() == [gy, gx] and bool(out["valid"][t])
        else:
            assert not out["patches"][t].any() and out["coords"][t].tolist() == [0, 0] and not out["valid"][t]


# --------------------------------------------------------------------------------------------- ComfyUI tensors


def comfy_tensors(rgba: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """What ComfyUI's LoadImage gives for an 8-bit RGBA file: IMAGE = rgb/255, MASK = 1 - alpha/255."""
    image = torch.from_numpy(rgba[..., :3].astype(np.float32) / 255)[None]
    mask = 1 - torch.from_numpy(rgba[..., 3].astype(np.float32) / 255)[None]
    return image, mask


@pytest.mark.parametrize(
    ("pipeline", "resize"), [("pillow", "lanczos"), ("vips", "mks2013-linear"), ("vips", "lanczos")]
)
def test_image_tensor_path_matches_pil_path(pipeline, resize):
    pre = NaFlexPreprocessor(max_seq=256, pipeline=pipeline, resize=resize)
    rgba = smooth_image(130, 210, 4, seed=21)
    image, mask = comfy_tensors(rgba)
    batch = pre.from_image_tensor(image.expand(2, -1, -1, -1), mask, device="cpu")  # batch-1 mask shared
    single = pre.from_pil(Image.fromarray(rgba))
    for key in ("patches", "coords", "valid"):
        assert batch[key].shape == (2, *single[key].shape)
        assert torch.equal(batch[key][0], single[key]) and torch.equal(batch[key][1], single[key])
    # LoadImage's 64x64 all-zero mask means opaque: same tokens as the RGB file
    opaque = pre.from_image_tensor(image, torch.zeros(64, 64))
    assert torch.equal(opaque["patches"][0], pre.from_pil(Image.fromarray(rgba[..., :3]))["patches"])
    assert torch.equal(pre.from_image_tensor(image)["patches"], opaque["patches"])


def test_image_tensor_mask_is_stretched_and_per_image():
    pre = NaFlexPreprocessor(max_seq=64, pipeline="vips", resize="lanczos")
    images = torch.full((2, 32, 32, 3), 0.8)
    mask = torch.zeros(2, 16, 16)
    mask[1] = 1.0  # second image fully transparent -> black
    out = pre.from_image_tensor(images, mask)
    assert out["patches"][0, :4].min() == 204 and out["patches"][1].max() == 0


# --------------------------------------------------------------------------------------------- heatmap mapping


def test_map_to_image():
    grid = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    full = map_to_image(grid, 320, 480)  # a 2x2 grid of an image of that size
    assert full.shape == (320, 480) and full.dtype == torch.float32
    assert full[0, 0] == 0 and full[0, -1] == 1 and full[-1, 0] == 2 and full[-1, -1] == 3
    assert 0 < full[160, 240] < 3 and math.isclose(float(full[160, 240]), 1.5, abs_tol=0.05)
    assert torch.allclose(map_to_image(torch.full((3, 5), 7.0), 10, 17), torch.full((10, 17), 7.0))


# --------------------------------------------------------------------------------------------- bad input


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(encode(Image.fromarray(smooth_image(300, 300)), "JPEG")[:2000])
    for pipeline in ("pillow", "vips"):
        with pytest.raises(ImageError, match="cut.jpg"):
            NaFlexPreprocessor(pipeline=pipeline).from_file(path)
    with pytest.raises(ImageError, match="nothing.png"):
        NaFlexPreprocessor().from_file(tmp_path / "nothing.png")


def test_from_file_and_fast_jpeg(tmp_path):
    path = tmp_path / "photo.jpg"
    coarse = torch.from_numpy(np.random.default_rng(30).uniform(0, 255, (1, 3, 5, 7)).astype(np.float32))
    photo = torch.nn.functional.interpolate(coarse, size=(900, 1300), mode="bilinear")[0].permute(1, 2, 0)
    path.write_bytes(encode(Image.fromarray(photo.round().byte().numpy()), "JPEG", quality=90))
    pre = NaFlexPreprocessor(max_seq=64, pipeline="vips", resize="mks2013-linear")
    exact = pre.from_file(path)
    assert torch.equal(exact["patches"], pre.from_pil(Image.open(path))["patches"])
    fast = pre.from_file(path, fast_jpeg=True)
    assert torch.equal(fast["valid"], exact["valid"])
    diff = (fast["patches"].float() - exact["patches"].float()).abs()
    assert 0 < diff.mean() < 1.5  # a draft decode at >= the target size: close, not identical


def test_bad_settings():
    with pytest.raises(ValueError, match="pipeline"):
        NaFlexPreprocessor(pipeline="opencv")
    with pytest.raises(ValueError, match="resize"):
        NaFlexPreprocessor(pipeline="vips", resize="bicubic")
    with pytest.raises(ImageError, match="IMAGE"):
        NaFlexPreprocessor().from_image_tensor(torch.zeros(2, 8, 8, 2))
