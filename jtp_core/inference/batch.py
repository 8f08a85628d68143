"""Tagging image files in batches: unreadable files are reported and skipped, the rest go on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from .streaming import load_model_input, should_pin, stream_batches
from .tagger import Tagger


@dataclass
class FileResult:
    path: Path
    probs: torch.Tensor | None = None  # [num_tags], None when the file failed
    error: str | None = None  # why the file could not be read (without its path)


def tag_files(
    tagger: Tagger,
    paths: Iterable[Path],
    batch_size: int | None = None,
    fast_jpeg: bool = False,
    workers: int | None = None,
) -> Iterator[FileResult]:
    """Yield one result per file; images are decoded in worker threads while the model runs a batch.

    ``fast_jpeg`` decodes JPEGs in draft mode (faster, scores move slightly; see fast_jpeg.py)."""
    load = partial(load_model_input, preprocessor=tagger.preprocessor, fast_jpeg=fast_jpeg)
    batches = stream_batches(
        paths, load, tagger.batch_size(batch_size), workers=workers, pin_memory=should_pin(tagger.device)
    )
    for batch in batches:
        for path, reason in batch.failed:
            yield FileResult(path=path, error=reason)
        if batch.inputs is not None:
            probs = tagger.predict(batch.inputs, batch_size=len(batch.items))
            yield from (FileResult(path=path, probs=row) for path, row in zip(batch.items, probs, strict=True))
