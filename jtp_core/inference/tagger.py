"""Batched inference: a loaded JTP model plus its tags, reused across calls until unloaded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..families.pilot.checkpoint import load_model
from ..families.pilot.gpu_preprocess import preprocess_image_batch
from ..families.pilot.preprocess import check_mask_batch, mask_slice, preprocess_image_tensor, preprocess_pils
from ..hub.files import ModelFiles, resolve_model
from .compiled import CompiledForward
from .devices import default_batch_size, fit_cpu_threads, pick_device, pick_dtype

# Called after each chunk with (images done, images in all); may raise to cancel between chunks.
ProgressCallback = Callable[[int, int], None]


@dataclass
class Tagger:
    model: nn.Module
    tags: list[str]
    variant: str
    name: str = ""
    compile_model: bool = False  # opt-in torch.compile of the forward pass; falls back to eager on failure
    _compiled: CompiledForward | None = field(default=None, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def input_size(self) -> int:
        return self.model.patch_embed.img_size[0]

    def batch_size(self, requested: int | None = None) -> int:
        """``requested`` images per forward pass, or the default for this device and precision when None/0."""
        if requested is not None and requested < 0:
            raise ValueError(f"batch size must be 1 or more (0 = automatic); got {requested}")
        return requested or default_batch_size(self.device, self.dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Tagger:
        self.model.to(device=device, dtype=dtype)
        return self

    def predict(
        self,
        pixels: torch.Tensor,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """Model inputs [N,3,S,S] → probabilities [N, num_tags] (float32, on the CPU), chunk by chunk."""
        batch_size = self.batch_size(batch_size)
        chunks = (pixels[start : start + batch_size] for start in range(0, len(pixels), batch_size))
        return self._run(chunks, len(pixels), on_progress)

    def predict_pils(
        self,
        images: Iterable[Image.Image],
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        total: int | None = None,
    ) -> torch.Tensor:
        """PIL images → probabilities; each chunk is preprocessed just before its forward pass."""
        batch_size = self.batch_size(batch_size)
        size = self.input_size
        chunks = (preprocess_pils(chunk, size) for chunk in _chunked(images, batch_size))
        return self._run(chunks, total, on_progress)

    def predict_image_tensor(
        self,
        images: torch.Tensor,
        mask: torch.Tensor | None = None,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """ComfyUI IMAGE [B,H,W,C] (+ MASK) → probabilities [B, num_tags]."""
        batch_size = self.batch_size(batch_size)
        check_mask_batch(mask, len(images))
        preprocess = _tensor_preprocessor(self.device)
        chunks = (
            preprocess(images[start : start + batch_size], mask_slice(mask, start, start + batch_size), self.input_size)
            for start in range(0, len(images), batch_size)
        )
        return self._run(chunks, len(images), on_progress)

    def _run(
        self, chunks: Iterable[torch.Tensor], total: int | None, on_progress: ProgressCallback | None
    ) -> torch.Tensor:
        device, dtype = self.device, self.dtype
        outputs, done = [], 0
        with torch.inference_mode():
            for chunk in chunks:
                probs = self._forward(chunk.to(device=device, dtype=dtype, non_blocking=True))
                outputs.append(probs.float().cpu())
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total if total is not None else done)
        if not outputs:
            return torch.empty(0, len(self.tags))
        return torch.cat(outputs)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not self.compile_model:
            return self.model(pixels)
        if self._compiled is None or self._compiled.model is not self.model:
            self._compiled = CompiledForward(self.model)
        return self._compiled(pixels)


def load_tagger(
    model: str | Path = "JTP_PILOT",
    device: str | torch.device = "auto",
    precision: str = "auto",
    models_dirs: list[Path] | None = None,
    download: bool = True,
    compile_model: bool = False,
) -> Tagger:
    """Resolve (and if needed download) a model by name or folder, and load it onto a device.

    ``precision="int8"`` (CPU only) quantizes the backbone's Linear layers; ``compile_model`` runs the model
    through torch.compile. Both are opt-in: int8 moves scores slightly, compiling takes a while the first time.
    """
    files = resolve_model(model, models_dirs=models_dirs, download=download)
    return load_tagger_from_files(files, device=device, precision=precision, compile_model=compile_model)


def load_tagger_from_files(
    files: ModelFiles, device: str | torch.device = "auto", precision: str = "auto", compile_model: bool = False
) -> Tagger:
    target = pick_device(device)
    loaded = load_model(files.weights, files.tags, device=target, dtype=pick_dtype(precision, target))
    if target.type == "cpu":
        fit_cpu_threads()
    if precision == "int8":
        from .quantize import quantize_int8

        quantize_int8(loaded.model)
    return Tagger(
        model=loaded.model, tags=loaded.tags, variant=loaded.variant, name=files.name, compile_model=compile_model
    )


def _tensor_preprocessor(device: torch.device) -> Callable[..., torch.Tensor]:
    """Pillow on the CPU; on CUDA the same fit computed on the GPU (bit-exact with Pillow: gpu_preprocess)."""
    if device.type == "cuda":
        return partial(preprocess_image_batch, device=device)
    return preprocess_image_tensor


def _chunked(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
