"""Finding and opening image files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError

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


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, so a truncated file fails here with its path, not later."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error
