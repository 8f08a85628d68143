"""Decode and preprocess images in worker threads, ahead of the model, in bounded memory.

Threads suffice: Pillow releases the GIL while it decodes and resizes, and so do numpy and torch. At most
``batch_size * prefetch + workers`` images are in flight (decoded or being decoded), whatever the number of
files, and results come back in input order, so output is deterministic.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch

from ..errors import ImageError
from ..families.base import ModelInput, Preprocessor, stack_inputs

Item = TypeVar("Item")


@dataclass
class Batch(Generic[Item]):
    items: list[Item]  # the items whose images decoded, in input order
    inputs: ModelInput | None  # a batch of model inputs for ``items``; None when no item of this batch decoded
    failed: list[tuple[Item, str]] = field(default_factory=list)  # items that failed since the last batch


def default_workers() -> int:
    """One decode thread per core, up to 8 (more rarely helps: the disk or the model becomes the limit)."""
    return max(1, min(8, os.cpu_count() or 1))


def should_pin(device: torch.device | str) -> bool:
    """Stack batches in pinned (page-locked) host memory only for CUDA: then the tagger's ``non_blocking``
    copy to the GPU overlaps with work on the host; on the CPU pinning buys nothing (and needs CUDA)."""
    return torch.device(device).type == "cuda"


def load_model_input(path: Path, preprocessor: Preprocessor, fast_jpeg: bool = False) -> ModelInput:
    """Read one image file and preprocess it for the model; ImageError with a short reason when it can't.

    ``fast_jpeg`` decodes JPEGs at a reduced scale where the family supports it: faster, scores move slightly."""
    try:
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
    except OSError as error:
        raise ImageError(f"cannot read file ({error.strerror or error})") from error
    try:
        return preprocessor.from_file(path, fast_jpeg)
    except ImageError as error:
        raise ImageError(str(error).removeprefix(f"{path}: ")) from error


def stream_batches(
    items: Iterable[Item],
    load: Callable[[Item], ModelInput],
    batch_size: int,
    workers: int | None = None,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> Iterator[Batch[Item]]:
    """Yield batches of loaded items; an item whose ``load`` raises is reported in ``failed`` with its reason.

    ``workers=0`` loads in the calling thread (no overlap; for debugging and comparison).
    ``pin_memory`` stacks each batch in pinned host memory (for CUDA; see ``should_pin``).
    Close the generator (or let it finish) to stop the workers.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ValueError("workers must be 0 (load in this thread) or more")
    if workers == 0:
        yield from _batched(((item, _attempt(load, item)) for item in items), batch_size, pin_memory)
        return
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jtp-decode")
    try:
        window = batch_size * prefetch + workers
        yield from _batched(_ordered(executor, items, load, window), batch_size, pin_memory)
    finally:
        # on early exit (cancel, error) drop what is queued; wait only for the few images being decoded
        executor.shutdown(wait=True, cancel_futures=True)


def _ordered(
    executor: ThreadPoolExecutor, items: Iterable[Item], load: Callable[[Item], ModelInput], window: int
) -> Iterator[tuple[Item, ModelInput | str]]:
    pending: deque[tuple[Item, Future]] = deque()
    iterator = iter(items)
    for item in iterator:
        pending.append((item, executor.submit(_attempt, load, item)))
        if len(pending) >= window:
            break
    while pending:
        item, future = pending.popleft()
        result = future.result()
        for next_item in iterator:  # keep the window full: one in, one out
            pending.append((next_item, executor.submit(_attempt, load, next_item)))
            break
        yield item, result


def _attempt(load: Callable[[Item], ModelInput], item: Item) -> ModelInput | str:
    """The loaded tensor, or the reason it failed: one bad file must never end a run over a folder."""
    try:
        return load(item)
    except ImageError as error:
        return str(error)
    except Exception as error:  # Pillow raises assorted errors (SyntaxError, struct.error...) on odd files
        return f"{type(error).__name__}: {error}"


def _batched(
    results: Iterable[tuple[Item, ModelInput | str]], batch_size: int, pin_memory: bool = False
) -> Iterator[Batch[Item]]:
    items: list[Item] = []
    tensors: list[ModelInput] = []
    failed: list[tuple[Item, str]] = []
    for item, result in results:
        if isinstance(result, str):
            failed.append((item, result))
            continue
        items.append(item)
        tensors.append(result)
        if len(items) == batch_size:
            yield Batch(items, stack_inputs(tensors, pin_memory), failed)
            items, tensors, failed = [], [], []
    if items or failed:
        yield Batch(items, stack_inputs(tensors, pin_memory) if tensors else None, failed)
