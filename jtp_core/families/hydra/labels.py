"""The Hydra checkpoints' own metadata: architecture, labels, background and resize settings.

- ``modelspec.architecture``: ``naflexvit_so400m_patch16_siglip+rr_hydra`` (JTP-3) or ``…+rr_hydra2`` (Hydra 3.5).
- ``classifier.labels``: one line per output, in output order. JTP-3: the tag name. Hydra 3.5:
  ``tag category implied1 implied2 …`` (single spaces; implications are the direct edges as stored).
- ``classifier.background`` (Hydra 3.5): ``black`` / ``grey`` / ``white``, absent → black. ``classifier.resize``:
  ``lanczos`` / ``mks2013-linear``, absent → lanczos. JTP-3's release ignores both keys (it composites on black
  through premultiplied alpha and resizes with Lanczos), so for ``rr_hydra`` they are not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import CheckpointError

ARCHITECTURE_KEY = "modelspec.architecture"
LABELS_KEY = "classifier.labels"
BACKGROUND_KEY = "classifier.background"
RESIZE_KEY = "classifier.resize"
BACKBONE = "naflexvit_so400m_patch16_siglip"
HEADS = ("rr_hydra", "rr_hydra2")
BACKGROUNDS = ("black", "grey", "white")
RESIZES = ("lanczos", "mks2013-linear")


@dataclass(frozen=True)
class HydraLabels:
    tags: list[str]  # output order, e621 spelling
    categories: list[str] | None  # per tag, by name (Hydra 3.5); None for JTP-3 (its CSV side file has them)
    implications: dict[str, tuple[str, ...]] | None  # direct edges as stored; None for JTP-3


def architecture_variant(metadata: dict[str, str], path: Path) -> str:
    """``rr_hydra`` or ``rr_hydra2`` from ``modelspec.architecture``; CheckpointError otherwise."""
    value = metadata.get(ARCHITECTURE_KEY)
    if value is None:
        raise CheckpointError(
            f"{path.name}: metadata key {ARCHITECTURE_KEY!r} is missing, so this is not a JTP-3 Hydra / Hydra 3.5 "
            "checkpoint"
        )
    backbone, plus, head = value.partition("+")
    if backbone != BACKBONE or not plus or head not in HEADS:
        known = ", ".join(f"{BACKBONE}+{h}" for h in HEADS)
        raise CheckpointError(f"{path.name}: {ARCHITECTURE_KEY} is {value!r}; this loader knows {known}")
    return head


def parse_labels(text: str | None, variant: str, path: Path) -> HydraLabels:
    """``classifier.labels`` → tags (and for Hydra 3.5 categories and direct implications)."""
    if text is None:
        raise CheckpointError(f"{path.name}: metadata key {LABELS_KEY!r} (the tag names) is missing")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # one trailing newline is harmless
    tags: list[str] = []
    categories: list[str] = []
    implications: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split(" ")
        if not line or "" in fields:
            raise CheckpointError(f"{path.name}: {LABELS_KEY} line {number} is empty or has a doubled space: {line!r}")
        if variant == "rr_hydra":
            if len(fields) != 1:
                raise CheckpointError(f"{path.name}: {LABELS_KEY} line {number} must be one tag name: {line!r}")
        elif len(fields) < 2:
            raise CheckpointError(
                f"{path.name}: {LABELS_KEY} line {number} must be 'tag category [implied …]': {line!r}"
            )
        tag = fields[0]
        tags.append(tag)
        if variant != "rr_hydra":
            categories.append(fields[1])
            if len(fields) > 2:
                implications[tag] = tuple(fields[2:])
    seen: set[str] = set()
    for tag in tags:
        if tag in seen:
            raise CheckpointError(f"{path.name}: {LABELS_KEY} lists tag {tag!r} twice")
        seen.add(tag)
    if variant == "rr_hydra":
        return HydraLabels(tags=tags, categories=None, implications=None)
    return HydraLabels(tags=tags, categories=categories, implications=implications)


def background(metadata: dict[str, str], variant: str, path: Path) -> str:
    """The colour transparent pixels are flattened onto: ``black`` / ``grey`` / ``white``."""
    if variant == "rr_hydra":
        return "black"  # the release premultiplies alpha, whatever the file says
    return _choice(metadata, BACKGROUND_KEY, BACKGROUNDS, "black", path)


def resize_method(metadata: dict[str, str], variant: str, path: Path) -> str:
    """``lanczos`` or ``mks2013-linear``."""
    if variant == "rr_hydra":
        return "lanczos"  # the release always resizes with Pillow's Lanczos
    return _choice(metadata, RESIZE_KEY, RESIZES, "lanczos", path)


def _choice(metadata: dict[str, str], key: str, allowed: tuple[str, ...], default: str, path: Path) -> str:
    value = metadata.get(key)
    if value is None:
        return default
    if value not in allowed:
        raise CheckpointError(f"{path.name}: metadata {key} is {value!r}; expected one of {', '.join(allowed)}")
    return value
