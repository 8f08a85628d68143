"""Batched inference: a loaded model of any family plus its labels, reused across calls until unloaded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ..errors import JTPError
from ..families import LoadedModel, ModelFamily, ModelInput, ModelSettings, load_checkpoint
from ..families.base import Labels, Preprocessor, stack_inputs
from ..families.image_tensors import check_mask_batch, mask_slice
from ..hub.files import ModelFiles, resolve_model
from .compiled import CompiledForward
from .devices import default_batch_size, fit_cpu_threads, pick_device, pick_dtype

# Called after each chunk with (images done, images in all); may raise to cancel between chunks.
ProgressCallback = Callable[[int, int], None]


@dataclass
class Tagger:
    model: nn.Module
    labels: Labels
    family: ModelFamily
    preprocessor: Preprocessor
    variant: str = ""
    name: str = ""
    compile_model: bool = False  # opt-in torch.compile of the forward pass; falls back to eager on failure
    _compiled: CompiledForward | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, name: str = "", compile_model: bool = False) -> Tagger:
        return cls(
            model=loaded.model,
            labels=loaded.labels,
            family=loaded.family,
            preprocessor=loaded.preprocessor,
            variant=loaded.variant,
            name=name,
            compile_model=compile_model,
        )

    @property
    def tags(self) -> list[str]:
        return self.labels.tags

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

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
        inputs: ModelInput,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """A batch of model inputs (see ``families.base``) → probabilities [N, tags] (float32, CPU), by chunks."""
        batch_size = self.batch_size(batch_size)
        total = len(next(iter(inputs.values())))
        chunks = (
            {key: value[start : start + batch_size] for key, value in inputs.items()}
            for start in range(0, total, batch_size)
        )
        return self._run(chunks, total, on_progress)

    def predict_pils(
        self,
        images: Iterable[Image.Image],
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        total: int | None = None,
    ) -> torch.Tensor:
        """PIL images → probabilities; each chunk is preprocessed just before its forward pass."""
        batch_size = self.batch_size(batch_size)
        chunks = (
            stack_inputs([self.preprocessor.from_pil(image) for image in chunk])
            for chunk in _chunked(images, batch_size)
        )
        return self._run(chunks, total, on_progress)

    def predict_image_tensor(
        self,
        images: torch.Tensor,
        mask: torch.Tensor | None = None,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """ComfyUI IMAGE [B,H,W,C] (+ MASK) → probabilities [B, tags]."""
        batch_size = self.batch_size(batch_size)
        check_mask_batch(mask, len(images))
        chunks = (
            self.preprocessor.from_image_tensor(
                images[start : start + batch_size], mask_slice(mask, start, start + batch_size), self.device
            )
            for start in range(0, len(images), batch_size)
        )
        return self._run(chunks, len(images), on_progress)

    def _run(
        self, chunks: Iterable[ModelInput], total: int | None, on_progress: ProgressCallback | None
    ) -> torch.Tensor:
        device = self.device
        outputs, done = [], 0
        with torch.inference_mode():
            for chunk in chunks:
                batch = {key: value.to(device=device, non_blocking=True) for key, value in chunk.items()}
                probs = self._forward(batch).float().cpu()
                check_finite(probs, self.name)
                outputs.append(probs)
                done += len(probs)
                if on_progress is not None:
                    on_progress(done, total if total is not None else done)
        if not outputs:
            return torch.empty(0, len(self.tags))
        return torch.cat(outputs)

    def _forward(self, batch: ModelInput) -> torch.Tensor:
        if not self.compile_model:
            return self.family.forward(self.model, batch)
        if self._compiled is None or self._compiled.model is not self.model:
            self._compiled = CompiledForward(self.model)
        return self.family.forward(self._compiled, batch)


def check_finite(probs: torch.Tensor, name: str = "") -> None:
    """A model that outputs NaN or infinity has broken weights (or overflowed in half precision): say so."""
    if not torch.isfinite(probs).all():
        bad = int((~torch.isfinite(probs)).any(dim=1).sum())
        model = f"the model {name}" if name else "the model"
        raise JTPError(
            f"{model} produced NaN or infinite scores for {bad} of {len(probs)} images: its weights are damaged, "
            "or the precision overflowed (try fp32 or bf16)"
        )


def load_tagger(
    model: str | Path = "JTP_PILOT",
    device: str | torch.device = "auto",
    precision: str = "auto",
    models_dirs: list[Path] | None = None,
    download: bool = True,
    compile_model: bool = False,
    sequence_length: int | None = None,
    runs_on: str | torch.device | None = None,
) -> Tagger:
    """Resolve (and if needed download) a model by name or folder, and load it onto a device.

    ``precision="int8"`` (CPU only) quantizes the backbone's Linear layers; ``compile_model`` runs the model
    through torch.compile. Both are opt-in: int8 moves scores slightly, compiling takes a while the first time.
    ``sequence_length``: patches per image for NaFlex (Hydra) models, 64..2048 (None = the model's default);
    other families ignore it.
    """
    files = resolve_model(model, models_dirs=models_dirs, download=download)
    return load_tagger_from_files(
        files, device=device, precision=precision, compile_model=compile_model, sequence_length=sequence_length,
        runs_on=runs_on,
    )


def load_tagger_from_files(
    files: ModelFiles,
    device: str | torch.device = "auto",
    precision: str = "auto",
    compile_model: bool = False,
    sequence_length: int | None = None,
    runs_on: str | torch.device | None = None,
) -> Tagger:
    """Load model files onto ``device``; with precision "auto" the family picks the dtype for ``runs_on`` (the
    device the model will run on, when it is loaded elsewhere first; default ``device``)."""
    target = pick_device(device)
    runs_on = pick_device(runs_on) if runs_on is not None else target
    loaded = load_checkpoint(
        files.weights,
        files.side_files,
        device=target,
        dtype=None if precision == "auto" else pick_dtype(precision, runs_on),
        settings=ModelSettings(sequence_length=sequence_length),
        runs_on=runs_on,
    )
    if target.type == "cpu":
        fit_cpu_threads()
    if precision == "int8":
        from .quantize import quantize_int8

        quantize_int8(loaded.model, loaded.family.float_modules)
    return Tagger.from_loaded(loaded, name=files.name, compile_model=compile_model)


def _chunked(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
