"""Tagging image files in batches: unreadable files are reported and skipped, the rest go on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ImageError
from .fast_jpeg import preprocess_file
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
    fast_jpeg: bool = False,
) -> Iterator[FileResult]:
    """Yield one result per file, in order; a batch of readable images shares one forward pass.

    ``fast_jpeg`` decodes JPEGs in draft mode (faster, scores move slightly; see fast_jpeg.py)."""
    batch_size = batch_size or 1
    size = tagger.input_size
    pending: list[tuple[Path, torch.Tensor]] = []
    for path in paths:
        try:
            pending.append((path, preprocess_file(path, size, fast_jpeg)))
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
