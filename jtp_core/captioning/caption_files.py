"""Caption files beside images (kohya / OneTrainer convention: ``foo.png`` → ``foo.txt``), and what to do
with one that already exists: skip, overwrite, append or prepend.

Decisions:
- A caption file that is empty or only whitespace counts as missing (other tools leave those when they
  crash), so skip mode fills it in.
- Existing captions are read as UTF-8 (a BOM is accepted). One that is not valid UTF-8 is never rewritten
  by a merge: append/prepend report it as a failure for that image and leave its bytes alone; skip mode
  never reads it; overwrite replaces it, as asked.
- Merging keeps the existing text as it is and adds only the tags it lacks, compared spelling-insensitively
  (``blue_eyes`` = ``Blue Eyes`` = ``(blue eyes:1.2)``). Trigger words missing from the caption go first in
  both merge modes, because trainers keep the first tokens (kohya's ``keep_tokens``).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Sequence
from pathlib import Path

from ..errors import JTPError
from ..tags.postprocess import normalize_tag, parse_tag_list
from .atomic_write import atomic_write_text

MODES = ("skip", "overwrite", "append", "prepend")
SIDECAR_SUFFIX = ".jtp.json"  # not "<stem>.json": gallery-dl and others keep their own metadata there
_WEIGHTED = re.compile(r"^\((.+):\s*[-+]?[0-9.]+\)$")


class CaptionFileError(JTPError):
    """An existing caption file cannot be merged with (e.g. it is not UTF-8 text); it is left untouched."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def normalize_extension(extension: str) -> str:
    extension = extension.strip()
    if not extension or extension == "." or "/" in extension or "\\" in extension:
        raise ValueError(f"not a file extension: {extension!r}")
    return extension if extension.startswith(".") else "." + extension


def caption_path(
    image: Path, root: Path | None = None, output_dir: Path | None = None, extension: str = ".txt"
) -> Path:
    """Where ``image``'s caption goes: beside it, or under ``output_dir`` at its place relative to ``root``."""
    if output_dir is None:
        return image.with_suffix(extension)
    relative = image.relative_to(root) if root is not None else Path(image.name)
    return (output_dir / relative).with_suffix(extension)


def sidecar_path(caption: Path) -> Path:
    return caption.with_suffix(SIDECAR_SUFFIX)


def has_caption(path: Path) -> bool:
    """True when ``path`` holds a caption: a file that is not empty or whitespace only."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISREG(info.st_mode):
        return False  # e.g. a folder of that name: writing will fail and be reported for the image
    if info.st_size == 0:
        return False
    if info.st_size > 4096:  # a real caption; no need to read it
        return True
    try:
        return bool(path.read_bytes().strip())
    except OSError:
        return True  # exists but unreadable: never touch it in skip mode


def read_caption(path: Path) -> str | None:
    """The caption text, None when there is no file; CaptionFileError when it is not UTF-8."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CaptionFileError(
            f"existing caption {path} is not UTF-8 text (bad byte at offset {error.start}); left as it is. "
            "Convert it to UTF-8, or use mode 'overwrite' to replace it"
        ) from None


def caption_tag_key(tag: str) -> str:
    """Spelling-insensitive identity of a tag in a caption, ignoring a prompt weight ``(tag:1.2)``."""
    tag = tag.strip()
    weighted = _WEIGHTED.match(tag)
    return normalize_tag(weighted.group(1) if weighted else tag)


def split_caption(text: str, separator: str = ", ") -> list[str]:
    """Tags of a caption string; split on the separator, or on commas and new lines for blank separators."""
    marker = separator.strip()
    if not marker:
        return list(parse_tag_list(text))
    return [part.strip() for line in text.splitlines() for part in line.split(marker) if part.strip()]


def merge_caption(existing: str, tags: Sequence[str], mode: str, separator: str = ", ", leading: int = 0) -> str:
    """Add to ``existing`` the ``tags`` it lacks: after it (append) or before it (prepend).

    The first ``leading`` tags (trigger words) go before the existing text in both modes.
    """
    existing = existing.strip()
    present = {caption_tag_key(tag) for tag in split_caption(existing, separator)}
    front, back = [], []
    for position, tag in enumerate(tags):
        key = caption_tag_key(tag)
        if not key or key in present:
            continue
        present.add(key)
        (front if position < leading else back).append(tag)
    if mode == "append":
        parts = [*front, existing, *back]
    elif mode == "prepend":
        parts = [*front, *back, existing]
    else:
        raise ValueError(f"merge mode must be append or prepend; got {mode!r}")
    return separator.join(part for part in parts if part)


def write_caption(
    path: Path,
    text: str,
    mode: str = "skip",
    tags: Sequence[str] | None = None,
    separator: str = ", ",
    leading: int = 0,
    durable: bool = True,
) -> str:
    """Write ``text`` as the caption at ``path`` according to ``mode``, atomically.

    ``tags`` are the parts of ``text`` used when merging (default: ``text`` split on ``separator``).
    Returns what happened: "written", "merged", "unchanged" (nothing to add) or "skipped" (caption exists).
    """
    check_mode(mode)
    existing = None
    if mode == "skip":
        if has_caption(path):
            return "skipped"
    elif mode != "overwrite":
        existing = read_caption(path)
    if existing is not None and existing.strip():
        tags = split_caption(text, separator) if tags is None else tags
        merged = merge_caption(existing, tags, mode, separator, leading)
        if merged == existing.strip():
            return "unchanged"
        text, outcome = merged, "merged"
    else:
        outcome = "written"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text, durable=durable)
    return outcome
