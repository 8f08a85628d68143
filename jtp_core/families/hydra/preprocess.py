"""NaFlex preprocessing for JTP-3 Hydra (Pillow release pipeline) and Hydra 3.5 (libvips pipeline).

One image becomes ``{"patches": uint8 [S,768], "coords": int32 [S,2] (y, x), "valid": bool [S]}`` with S =
max_seq: 16x16 patches of the resized image in row-major grid order, each flattened as (row, column, RGB),
padded with zero tokens. The size follows ``size_for_seq`` (floored to whole patches, never upscaled except to
one patch). Two pipelines, chosen from the checkpoint's metadata (:meth:`NaFlexPreprocessor.from_metadata`):

- ``"pillow"`` (JTP-3 release): EXIF transpose, ICC -> sRGB, premultiplied ``RGBa`` when there is
  transparency, LANCZOS with ``reducing_gap=3.0``, keep RGB (= composite on black).
- ``"vips"`` (Hydra 3.5 package): ICC -> sRGB, flatten alpha onto the background at full size, resize with
  libvips' ``mks2013`` in 16-bit linear light (``"mks2013-linear"``) or ``lanczos3`` in sRGB (``"lanczos"``),
  orientation last. The resize is :mod:`.resize`, a bit-exact port of libvips 8.18 (no extra dependency);
  ``backend="pyvips"`` runs RedRocket's own libvips calls instead (``pip install pyvips pyvips-binary``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from ...errors import ImageError
from ..image_tensors import alpha_channel, as_image_batch, rgb_channels, to_8bit
from .resize import PATCH_SIZE, check_max_seq, lanczos3_resize, mks2013_linear_resize, size_for_seq

PIPELINES = ("pillow", "vips")
BACKENDS = ("port", "pyvips")
BACKGROUNDS = {"black": 0, "grey": 127, "white": 255}
RESIZES = ("lanczos", "mks2013-linear")
TOKEN_BYTES = PATCH_SIZE * PATCH_SIZE * 3

_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ORIENTATION_TAG = 0x0112


# --------------------------------------------------------------------------------------------- packing


def grid_for(height: int, width: int, max_seq: int = 1024) -> tuple[int, int]:
    """Patch grid (rows, cols) of an image of this size."""
    out_h, out_w = size_for_seq(height, width, max_seq)
    return out_h // PATCH_SIZE, out_w // PATCH_SIZE


def pack_patches(pixels: torch.Tensor, max_seq: int) -> dict[str, torch.Tensor]:
    """uint8 [..., H, W, 3] (H, W multiples of 16) -> patches [..., S, 768], coords [..., S, 2], valid [..., S]."""
    *lead, height, width, channels = pixels.shape
    gh, gw = height // PATCH_SIZE, width // PATCH_SIZE
    n = gh * gw
    if channels != 3 or height % PATCH_SIZE or width % PATCH_SIZE or n > max_seq:
        raise ImageError(f"cannot pack a {width}x{height}x{channels} image into {max_seq} patches")
    tokens = pixels.reshape(*lead, gh, PATCH_SIZE, gw, PATCH_SIZE, 3).movedim(-4, -3)  # [..., gh, gw, py, px, c]
    patches = torch.zeros(*lead, max_seq, TOKEN_BYTES, dtype=torch.uint8, device=pixels.device)
    patches[..., :n, :] = tokens.reshape(*lead, n, TOKEN_BYTES)
    coords = torch.zeros(max_seq, 2, dtype=torch.int32, device=pixels.device)
    coords[:n, 0] = torch.arange(gh, dtype=torch.int32, device=pixels.device).repeat_interleave(gw)
    coords[:n, 1] = torch.arange(gw, dtype=torch.int32, device=pixels.device).repeat(gh)
    valid = torch.zeros(max_seq, dtype=torch.bool, device=pixels.device)
    valid[:n] = True
    return {
        "patches": patches,
        "coords": coords.expand(*lead, max_seq, 2).clone(),
        "valid": valid.expand(*lead, max_seq).clone(),
    }


def map_to_image(grid_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A per-patch map [gh, gw] (e.g. a heatmap) -> float32 [height, width] over the ORIGINAL image.

    Each patch value sits at its patch centre in the resized image; original pixel centres are followed through
    the resize (x_resized = (x + 0.5) * out_w / width - 0.5) and sampled bilinearly with edge clamping. Memory is
    O(height * width).
    """
    gh, gw = grid_map.shape[-2:]
    values = grid_map.detach().float().cpu()

    def axis(n_out: int, n_grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        resized = n_grid * PATCH_SIZE
        pos = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (resized / n_out) - 0.5  # in resized pixels
        cell = ((pos + 0.5) / PATCH_SIZE - 0.5).clamp(0, n_grid - 1)  # in patch-centre units
        lo = cell.floor().long().clamp(max=n_grid - 1)
        hi = (lo + 1).clamp(max=n_grid - 1)
        return lo, hi, (cell - lo).float()

    y0, y1, fy = axis(height, gh)
    x0, x1, fx = axis(width, gw)
    top = values[y0][:, x0] * (1 - fx) + values[y0][:, x1] * fx  # [height, width] rows at y0
    bottom = values[y1][:, x0] * (1 - fx) + values[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


# --------------------------------------------------------------------------------------------- shared decoding


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
        return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:  # noqa: BLE001 - broken EXIF never stops tagging (the release ignores errors too)
        return 1


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit grey -> "L" with lcms' 16->8 rounding (what libvips' icc_transform(depth=8) does)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.int64)
        if image.mode == "I" and values.max(initial=0) <= 255:
            return Image.fromarray(values.astype(np.uint8), "L")
        values = values.clip(0, 65535)
        return Image.fromarray(((values * 65281 + 8388608) >> 24).astype(np.uint8), "L")
    if image.mode == "F":
        return Image.fromarray(np.asarray(image).clip(0, 255).round().astype(np.uint8), "L")
    return image


def _working_mode(image: Image.Image) -> str:
    alpha = _has_alpha(image)
    if image.mode in _GREY_MODES:
        return "LA" if alpha else "L"
    return "RGBA" if alpha else "RGB"


@functools.cache
def libvips_srgb_profile() -> bytes:
    """The sRGB output profile libvips' ``icc_transform("srgb")`` uses, built from its numbers.

    libvips bundles the public-domain (CC0) compact "sRGB" v4 profile; its primaries, chad matrix and
    parametric curve (gamma 2.40004, s15.16) differ in the last bits from lcms' built-in sRGB, which moves ~1.6%
    of 8-bit values by one step. With these numbers Pillow's lcms gives libvips' bytes exactly.
    """

    def xyz(x: int, y: int, z: int) -> bytes:
        return b"XYZ " + bytes(4) + struct.pack(">3i", x, y, z)

    def mluc(text: str) -> bytes:
        raw = text.encode("utf-16-be")
        return b"mluc" + bytes(4) + struct.pack(">II4sII", 1, 12, b"enUS", len(raw), 28) + raw

    chad = (0x10C3F, 0x5DD, -0xCDA, 0x790, 0xFD92, -0x45F, -0x25E, 0x3DC, 0xC071)
    trc = b"para" + bytes(4) + struct.pack(">HH5i", 3, 0, 0x26669, 0xF2A7, 0xD59, 0x13D0, 0xA5B)
    tags = [
        (b"desc", mluc("sRGB")),
        (b"cprt", mluc("CC0")),
        (b"wtpt", xyz(0xF6D6, 0x10000, 0xD32D)),
        (b"chad", b"sf32" + bytes(4) + struct.pack(">9i", *chad)),
        (b"rXYZ", xyz(0x6FA0, 0x38F2, 0x38F)),
        (b"gXYZ", xyz(0x6296, 0xB789, 0x18DA)),
        (b"bXYZ", xyz(0x24A0, 0xF85, 0xB6C4)),
        (b"rTRC", trc),
    ]
    table_end = 128 + 4 + 12 * (len(tags) + 2)
    body, entries, offset = b"", [], table_end
    for signature, data in tags:
        entries.append((signature, offset, len(data)))
        data += bytes(-len(data) % 4)
        body += data
        offset += len(data)
    trc_entry = entries[-1]
    entries += [(b"gTRC", trc_entry[1], trc_entry[2]), (b"bTRC", trc_entry[1], trc_entry[2])]
    table = struct.pack(">I", len(entries)) + b"".join(struct.pack(">4sII", *entry) for entry in entries)
    size = table_end + len(body)
    header = struct.pack(">I4sI4s4s4s12s4s", size, b"lcms", 0x04200000, b"mntr", b"RGB ", b"XYZ ", bytes(12), b"acsp")
    header += bytes(24) + struct.pack(">I3i", 0, 0xF6D6, 0x10000, 0xD32D)
    header += bytes(128 - len(header))
    return header + table + body


def _icc_to_srgb(image: Image.Image, libvips: bool) -> Image.Image:
    """Embedded ICC profile -> sRGB, relative colorimetric + black-point compensation (else the profile's
    default intent). Any error leaves the image as it is (both releases do so).

    Pillow release: lcms' built-in sRGB with HIGHRESPRECALC; grey stays "L" (lcms refuses grey -> an RGB
    profile in mode L, so such images are left unchanged). ``libvips``: libvips' own sRGB profile, its flags
    (black-point compensation only) and grey -> 3-band sRGB, as ``icc_transform("srgb", depth=8)`` does.
    """
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if libvips:
            srgb = ImageCms.ImageCmsProfile(io.BytesIO(libvips_srgb_profile()))
            precision = ImageCms.Flags.NONE
        else:
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            precision = ImageCms.Flags.HIGHRESPRECALC
        relative = ImageCms.Intent.RELATIVE_COLORIMETRIC
        if ImageCms.isIntentSupported(source, relative, ImageCms.Direction.INPUT):
            intent, flags = relative, precision | ImageCms.Flags.BLACKPOINTCOMPENSATION
        else:
            intent, flags = ImageCms.getDefaultIntent(source), precision
        mode = _working_mode(image)
        if image.mode == "CMYK":
            in_mode, converted = "CMYK", image
        else:
            in_mode, converted = mode, _to_8bit(image).convert(mode)
        alpha = converted.getchannel("A") if mode in ("RGBA", "LA") else None
        if in_mode == "LA":  # lcms has no grey+alpha type in Pillow: transform the grey, keep alpha aside
            in_mode, converted = "L", converted.getchannel("L")
        out_mode = "RGB" if (in_mode in ("RGB", "RGBA", "CMYK") or libvips) else in_mode
        if in_mode == "RGBA":
            in_mode, converted = "RGB", converted.convert("RGB")
        transform = ImageCms.buildTransform(source, srgb, in_mode, out_mode, intent, flags)
        result = ImageCms.applyTransform(converted, transform)
        if alpha is not None:
            result.putalpha(alpha)
        return result
    except Exception:  # noqa: BLE001 - lcms raises several types; a bad profile must not stop tagging
        return image


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:  # truncated data surfaces only when pixels are decoded
        raise ImageError(f"could not decode image: {error}") from error


# --------------------------------------------------------------------------------------------- pipelines


def pillow_release_pixels(image: Image.Image, max_seq: int = 1024, size: tuple[int, int] | None = None) -> np.ndarray:
    """JTP-3 release preprocessing: uint8 [h, w, 3] at the NaFlex size (or at ``size`` (h, w), display
    orientation, when given: a JPEG draft must keep the full image's target)."""
    _load(image)
    with contextlib.suppress(Exception):  # the release ignores EXIF errors
        image = ImageOps.exif_transpose(image)
    image = _icc_to_srgb(image, libvips=False)
    try:
        image = _to_8bit(image)
        image = image.convert("RGBA").convert("RGBa") if _has_alpha(image) else image.convert("RGB")
        out_h, out_w = size or size_for_seq(image.height, image.width, max_seq)
        if image.size != (out_w, out_h):
            image = image.resize((out_w, out_h), Image.LANCZOS, reducing_gap=3.0)
        return np.array(image, dtype=np.uint8)[..., :3]
    except (OSError, ValueError) as error:
        raise ImageError(f"could not convert image: {error}") from error


def flatten(rgb: torch.Tensor, alpha: torch.Tensor | None, background: int) -> torch.Tensor:
    """libvips flatten for 8-bit: floor((p * a + bg * (255 - a)) / 255); rgb [..., 3], alpha [...]."""
    if alpha is None:
        return rgb
    a = alpha.to(torch.int32).unsqueeze(-1)
    total = rgb.to(torch.int32) * a + background * (255 - a)  # <= 65025
    return ((total * 32897) >> 23).to(torch.uint8)  # == total // 255 for 0 <= total <= 65025 (checked in tests)


def vips_resize_srgb(pixels: torch.Tensor, out_h: int, out_w: int, resize: str) -> torch.Tensor:
    """uint8 sRGB [..., H, W, 3] -> uint8 [..., out_h, out_w, 3] with Hydra's resize mode."""
    if pixels.shape[-3:-1] == (out_h, out_w):
        return pixels
    if resize == "mks2013-linear":
        return mks2013_linear_resize(pixels, out_h, out_w)
    if resize == "lanczos":
        return lanczos3_resize(pixels, out_h, out_w)
    raise ValueError(f"unknown resize {resize!r}; expected one of {RESIZES}")


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 2..8 applied to [H, W, C] (display orientation), as libvips autorot does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: a.transpose(1, 0, 2)[::-1],
    }
    return np.ascontiguousarray(ops[orientation](pixels)) if orientation in ops else pixels


def vips_port_pixels(
    image: Image.Image, max_seq: int, background: int, resize: str, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Hydra 3.5 preprocessing with the libvips port: uint8 [h, w, 3] at the NaFlex size (or ``size``), display
    orientation."""
    _load(image)
    orientation = _orientation(image)
    image = _icc_to_srgb(image, libvips=True)
    try:
        image = _to_8bit(image)
        rgba = np.array(image.convert("RGBA" if _has_alpha(image) else "RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise ImageError(f"could not convert image: {error}") from error
    height, width = rgba.shape[:2]
    display = (width, height) if 5 <= orientation <= 8 else (height, width)
    out_h, out_w = size or size_for_seq(*display, max_seq)
    if 5 <= orientation <= 8:
        out_h, out_w = out_w, out_h  # resize in stored orientation, rotate last
    pixels = torch.from_numpy(rgba)
    rgb = flatten(pixels[..., :3], pixels[..., 3] if rgba.shape[-1] == 4 else None, background)
    resized = vips_resize_srgb(rgb, out_h, out_w, resize).numpy()
    return _orient(resized, orientation)


def _pyvips() -> Any:
    try:
        import pyvips
    except (ImportError, OSError) as error:
        raise ImportError(
            "the 'pyvips' backend needs libvips: pip install pyvips pyvips-binary "
            f"(or use backend='port', the built-in exact port) [{error}]"
        ) from error
    return pyvips


def pyvips_pixels(source: Path | bytes, max_seq: int, background: int, resize: str) -> np.ndarray:
    """RedRocket's own libvips calls (hydra/image.py, open_srgb): uint8 [h, w, 3]."""
    pyvips = _pyvips()
    from .resize import linear16_to_srgb_lut, srgb_to_linear16_lut

    try:
        img = (
            pyvips.Image.new_from_file(str(source), access="random")
            if isinstance(source, Path)
            else pyvips.Image.new_from_buffer(source, "")
        )
        rotated = img.get_typeof("orientation") != 0 and 5 <= int(img.get("orientation")) <= 8
        size = (img.width, img.height) if rotated else (img.height, img.width)
        out_h, out_w = size_for_seq(*size, max_seq)
        target = (out_w, out_h) if rotated else (out_h, out_w)
        img = img.icc_transform("srgb", embedded=True, intent="relative", black_point_compensation=True, depth=8)
        if img.hasalpha():
            img = img.flatten(background=background)
        if target != (img.height, img.width):
            if resize == "mks2013-linear":
                lut_in = pyvips.Image.new_from_array(srgb_to_linear16_lut().numpy().astype(np.uint16))
                lut_out = pyvips.Image.new_from_array(linear16_to_srgb_lut().numpy())
                img = img.maplut(lut_in)
                img = img.resize(target[1] / img.width, vscale=target[0] / img.height, kernel="mks2013", gap=3.0)
                img = img.maplut(lut_out)
            else:
                img = img.resize(target[1] / img.width, vscale=target[0] / img.height, kernel="lanczos3", gap=3.0)
        array = img.autorot().numpy()
    except pyvips.Error as error:
        raise ImageError(f"libvips could not read the image: {error}") from error
    if array.ndim == 2 or array.shape[-1] == 1:  # not expected after icc_transform to sRGB, but be safe
        array = np.repeat(array.reshape(*array.shape[:2], 1), 3, axis=-1)
    return np.ascontiguousarray(array[..., :3])


# --------------------------------------------------------------------------------------------- ComfyUI tensors


def _alpha_bytes(images: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """uint8 alpha [B,H,W] from MASK (1 = transparent) or the IMAGE's 4th channel; None when opaque (no alpha
    channel, or LoadImage's all-zero 64x64 placeholder), so opaque images skip the transparency steps."""
    height, width = images.shape[1:3]
    if mask is None and images.shape[-1] != 4:
        return None
    if mask is not None and mask.shape[-2:] == (64, 64) and (height, width) != (64, 64) and not mask.any():
        return None
    return to_8bit(alpha_channel(images, mask, images.device))


# --------------------------------------------------------------------------------------------- the preprocessor


class NaFlexPreprocessor:
    """Image -> Hydra model input (one dict per image on the CPU, or a batch from ComfyUI tensors).

    pipeline: "pillow" (JTP-3 release; background must be "black" and resize "lanczos", which is what it does)
    or "vips" (Hydra 3.5). backend (vips only): "port" (built-in, exact) or "pyvips" (RedRocket's libvips calls;
    needs ``pip install pyvips pyvips-binary``; files only, PIL images and tensors use the port's resize).
    """

    def __init__(
        self,
        max_seq: int = 1024,
        pipeline: str = "pillow",
        background: str = "black",
        resize: str = "lanczos",
        backend: str = "port",
    ) -> None:
        self.max_seq = check_max_seq(max_seq)
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {tuple(BACKGROUNDS)}, got {background!r}")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if pipeline == "pillow" and (background, resize) != ("black", "lanczos"):
            raise ValueError(
                f"the Pillow (JTP-3 release) pipeline composites on black with LANCZOS; got background="
                f"{background!r}, resize={resize!r} (use pipeline='vips' for Hydra 3.5 settings)"
            )
        if backend == "pyvips":
            if pipeline != "vips":
                raise ValueError("backend='pyvips' is for the libvips pipeline (pipeline='vips')")
            _pyvips()  # fail now, with the install hint, rather than on the first image
        self.pipeline, self.background, self.resize, self.backend = pipeline, background, resize, backend

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], max_seq: int = 1024, backend: str = "port") -> NaFlexPreprocessor:
        """Settings from a checkpoint's ``__metadata__``: ``+rr_hydra2`` (Hydra package) -> libvips pipeline with
        ``classifier.background`` (absent: black) and ``classifier.resize`` (absent: lanczos, the package's
        default kernel); anything else (JTP-3 release) -> Pillow, which ignores both keys."""
        architecture = metadata.get("modelspec.architecture", "")
        if not architecture.endswith("+rr_hydra2"):
            return cls(max_seq, "pillow")
        background = metadata.get("classifier.background", "black")
        resize = metadata.get("classifier.resize", "lanczos")
        if background not in BACKGROUNDS:
            raise ValueError(
                f"classifier.background: unknown value {background!r}; expected one of {tuple(BACKGROUNDS)}"
            )
        if resize not in RESIZES:
            raise ValueError(f"classifier.resize: unknown value {resize!r}; expected one of {RESIZES}")
        return cls(max_seq, "vips", background, resize, backend)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (rows, cols) for an image of this display size."""
        return grid_for(height, width, self.max_seq)

    def map_to_image(self, grid_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """[gh, gw] per-patch values -> float32 [height, width] over the original image (bilinear)."""
        return map_to_image(grid_map, height, width)

    def pixels_from_pil(self, image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
        """The resized uint8 [h, w, 3] image the tokens are cut from (``size``: force the display size)."""
        if self.pipeline == "pillow":
            return pillow_release_pixels(image, self.max_seq, size)
        return vips_port_pixels(image, self.max_seq, BACKGROUNDS[self.background], self.resize, size)

    def from_pil(self, image: Image.Image, size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        return pack_patches(torch.from_numpy(np.ascontiguousarray(self.pixels_from_pil(image, size))), self.max_seq)

    def from_file(self, path: str | Path, fast_jpeg: bool = False) -> dict[str, torch.Tensor]:
        """Open and preprocess a file. ``fast_jpeg`` decodes a JPEG at a reduced DCT scale that is never below
        the target size (faster, not bit-identical)."""
        path = Path(path)
        if self.backend == "pyvips" and not fast_jpeg:
            try:
                data = path.read_bytes()
            except OSError as error:
                raise ImageError(f"{path}: cannot read ({error})") from error
            try:
                pixels = pyvips_pixels(data, self.max_seq, BACKGROUNDS[self.background], self.resize)
            except ImageError as error:
                raise ImageError(f"{path}: {error}") from error
            return pack_patches(torch.from_numpy(pixels), self.max_seq)
        try:
            with Image.open(path) as image:
                size = self._draft(image) if fast_jpeg and image.format == "JPEG" else None
                return self.from_pil(image, size)
        except ImageError as error:
            raise ImageError(f"{path}: {error}") from error
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise ImageError(f"{path}: not a readable image ({error})") from error

    def _draft(self, image: Image.Image) -> tuple[int, int]:
        """Ask for a DCT-scaled decode no smaller than the target; returns the full image's target (display h, w)
        so the grid does not depend on the draft's rounding."""
        width, height = image.size
        rotated = 5 <= _orientation(image) <= 8
        target = size_for_seq(*((width, height) if rotated else (height, width)), self.max_seq)
        stored_h, stored_w = (target[1], target[0]) if rotated else target
        # Pillow picks the largest scale s with size // s >= requested on both axes: never below the target
        image.draft(image.mode, (stored_w, stored_h))
        return target

    def from_image_tensor(
        self, images: torch.Tensor, mask: torch.Tensor | None = None, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """ComfyUI IMAGE [B,H,W,C] floats in [0,1] (+ MASK, 1 = transparent) -> batched inputs on ``device``.

        Values are taken back to 8 bits (lossless for images ComfyUI loaded from 8-bit files), so this gives the
        same tokens as the file/PIL path. The libvips pipeline runs batched on ``device``; Pillow runs per image.
        """
        images = as_image_batch(images)
        device = torch.device(device) if device is not None else images.device
        alpha = _alpha_bytes(images, mask)
        rgb = to_8bit(rgb_channels(images))
        height, width = rgb.shape[1:3]
        if self.pipeline == "pillow":
            batch = []
            for i in range(rgb.shape[0]):
                array = rgb[i].cpu().numpy()
                if alpha is not None:
                    array = np.concatenate([array, alpha[i].cpu().numpy()[..., None]], axis=-1)
                resized = pillow_release_pixels(Image.fromarray(array), self.max_seq)
                batch.append(torch.from_numpy(np.ascontiguousarray(resized)))
            pixels = torch.stack(batch).to(device)
        else:
            out_h, out_w = size_for_seq(height, width, self.max_seq)
            flat = flatten(rgb.to(device), None if alpha is None else alpha.to(device), BACKGROUNDS[self.background])
            pixels = vips_resize_srgb(flat, out_h, out_w, self.resize).to(torch.uint8)
        return pack_patches(pixels, self.max_seq)
