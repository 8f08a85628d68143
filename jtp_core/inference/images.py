"""Finding and opening image files, with a limit on their pixel count.

Pillow warns above ``Image.MAX_IMAGE_PIXELS`` (89.5 MP) and refuses twice that (179 MP), as a guard against
decompression bombs; its warning is a raw two-line ``DecompressionBombWarning`` on stderr. Here:
- by default Pillow's limits apply, and its warning becomes one clear line on the ``jtp_core`` logger;
- ``--max-pixels N`` (command line), ``JTP_MAX_PIXELS=N`` (environment, for ComfyUI and the WebUI too) or
  ``set_max_pixels(N)``: images of more than N pixels are refused with an ImageError that says so, and no
  warning is printed below N (N may be above Pillow's limits); 0 = no limit.
Every image file the families open goes through ``open_unloaded`` (``open_image`` decodes it too).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError

MAX_PIXELS_ENV = "JTP_MAX_PIXELS"
log = logging.getLogger("jtp_core")
_max_pixels: int | None = None  # set_max_pixels; None = the environment variable, else Pillow's limits
# Pillow's limit and the warning filters are process-wide: opening (a header read, not the decode) is
# serialised so that worker threads do not undo each other's settings
_OPEN_LOCK = threading.Lock()

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".avif")


def is_image_file(path: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> bool:
    return path.is_file() and path.suffix.lower() in tuple(extensions) and not path.name.startswith(".")


def iter_image_files(
    paths: Iterable[str | Path], recursive: bool = False, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> Iterator[Path]:
    """Files as given, and the images inside folders (sorted; hidden files and folders skipped)."""
    extensions = tuple(ext.lower() for ext in extensions)
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = path.rglob("*") if recursive else path.iterdir()
            for candidate in sorted(candidates):
                hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
                if not hidden and is_image_file(candidate, extensions):
                    yield candidate
        elif path.exists():
            yield path
        else:
            raise ImageError(f"no such file or folder: {path}")


def set_max_pixels(limit: int | None) -> None:
    """Refuse images of more than ``limit`` pixels (0 = no limit; None = back to $JTP_MAX_PIXELS / Pillow's)."""
    global _max_pixels
    if limit is not None and limit < 0:
        raise ValueError("the pixel limit must be 0 (no limit) or more")
    _max_pixels = limit


def max_pixels() -> int | None:
    """The pixel limit in force: set_max_pixels, else $JTP_MAX_PIXELS, else None (Pillow's own limits)."""
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return None
    try:
        value = int(float(text))  # 2e8 is accepted
    except ValueError:
        raise ImageError(f"{MAX_PIXELS_ENV}={text!r} is not a number of pixels") from None
    if value < 0:
        raise ImageError(f"{MAX_PIXELS_ENV} must be 0 (no limit) or more; got {value}")
    return value


def open_unloaded(path: str | Path) -> Image.Image:
    """``Image.open`` (header only) with the pixel limit applied; ImageError for a file that cannot be used."""
    limit = max_pixels()
    try:
        with _OPEN_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            saved = Image.MAX_IMAGE_PIXELS
            if limit is not None:
                Image.MAX_IMAGE_PIXELS = None  # our limit replaces Pillow's (it may be higher)
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Image.DecompressionBombError as error:
        raise ImageError(
            f"{path}: refused as too big ({error}). If you trust the file, raise the limit with --max-pixels N "
            f"or {MAX_PIXELS_ENV}=N"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error
    _report_warnings(caught, path, image)
    pixels = image.width * image.height
    if limit and pixels > limit:
        image.close()
        raise ImageError(f"{path}: {image.width}×{image.height} = {_megapixels(pixels)} is above the pixel limit of "
                         f"{_megapixels(limit)} (--max-pixels / {MAX_PIXELS_ENV})")
    return image


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, so a truncated file fails here with its path, not later."""
    image = open_unloaded(path)
    try:
        with image:
            image.load()
            return image
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error


def _report_warnings(caught: list[warnings.WarningMessage], path: str | Path, image: Image.Image) -> None:
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            pixels = image.width * image.height
            log.warning(
                "%s: %s is above Pillow's %s safety limit; opening it anyway (above %s it would be refused; "
                "set --max-pixels or %s to choose the limit)", path, _megapixels(pixels),
                _megapixels(Image.MAX_IMAGE_PIXELS), _megapixels(2 * Image.MAX_IMAGE_PIXELS), MAX_PIXELS_ENV,
            )
        else:  # not ours to swallow
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _megapixels(pixels: int | None) -> str:
    pixels = pixels or 0
    return f"{pixels / 1e6:.1f} MP" if pixels >= 1_000_000 else f"{pixels:,} pixels"
