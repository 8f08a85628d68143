"""Tagging image files in batches: unreadable files are reported and skipped, the rest go on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ImageError
from .images import open_image
from .preprocess import preprocess_pil
from .tagger import Tagger


@dataclass
class FileResult:
    path: Path
    probs: torch.Tensor | None = None  # [num_tags], None when the file failed
    error: str | None = None


def tag_files(
    tagger: Tagger,
    paths: Iterable[Path],
    batch_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[FileResult]:
    """Yield one result per file, in order; a batch of readable images shares one forward pass."""
    batch_size = batch_size or 1
    size = tagger.input_size
    pending: list[tuple[Path, torch.Tensor]] = []
    for path in paths:
        try:
            pending.append((path, preprocess_pil(open_image(path), size)))
        except ImageError as error:
            yield from _flush(tagger, pending, on_progress)
            pending = []
            yield FileResult(path=path, error=str(error))
            continue
        if len(pending) == batch_size:
            yield from _flush(tagger, pending, on_progress)
            pending = []
    yield from _flush(tagger, pending, on_progress)


def _flush(
    tagger: Tagger, pending: list[tuple[Path, torch.Tensor]], on_progress: Callable[[int], None] | None
) -> Iterator[FileResult]:
    if not pending:
        return
    probs = tagger.predict(torch.stack([pixels for _, pixels in pending]), batch_size=len(pending))
    if on_progress is not None:
        on_progress(len(pending))
    for (path, _), row in zip(pending, probs, strict=True):
        yield FileResult(path=path, probs=row)
