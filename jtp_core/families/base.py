"""What every model family offers the rest of the core: load → preprocess a batch → probabilities → labels.

A *model input* is a ``dict`` of tensors. For one image it has no batch dimension and lives on the CPU; a
batch is the same keys stacked (every image of a family has the same shapes: PILOT pads to 384², Hydra pads
its patch sequence to the sequence length). ``family.forward(model, batch)`` returns float32 probabilities
[B, tags]; nothing outside a family knows what the keys are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

from ..tags.labels import Labels
from .header import CheckpointHeader

ModelInput = dict[str, torch.Tensor]


def stack_inputs(items: list[ModelInput], pin_memory: bool = False) -> ModelInput:
    """One-image model inputs → a batch (each key stacked), written straight into pinned memory when asked
    (for CUDA: the copy to the GPU then overlaps with work on the host)."""
    return {key: _stack([item[key] for item in items], pin_memory) for key in items[0]}


def _stack(tensors: list[torch.Tensor], pin_memory: bool) -> torch.Tensor:
    if not pin_memory:
        return torch.stack(tensors)
    first = tensors[0]
    out = torch.empty((len(tensors), *first.shape), dtype=first.dtype, pin_memory=True)
    return torch.stack(tensors, out=out)


class Preprocessor(Protocol):
    """Turns images into model inputs exactly as the family's reference code does."""

    def from_pil(self, image: Image.Image) -> ModelInput:
        """One PIL image (any mode) → model input without a batch dimension, on the CPU."""

    def from_file(self, path: Path, fast_jpeg: bool = False) -> ModelInput:
        """One image file → model input; ``fast_jpeg`` may decode JPEGs at a reduced scale (opt-in)."""

    def from_image_tensor(
        self, images: torch.Tensor, mask: torch.Tensor | None, device: torch.device
    ) -> ModelInput:
        """ComfyUI IMAGE [B,H,W,C] in [0,1] (+ MASK, 1 = transparent) → a batch of model inputs on ``device``."""


@dataclass
class LoadedModel:
    family: ModelFamily
    variant: str  # e.g. "linear", "gated", "rr_hydra", "rr_hydra2"
    model: nn.Module
    labels: Labels
    preprocessor: Preprocessor
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSettings:
    """Per-load settings a family may use (others ignore them)."""

    sequence_length: int | None = None  # NaFlex models: patches per image (None = the model's default)


class ModelFamily(ABC):
    """One family of checkpoints: recognises its files, builds and loads them, runs them."""

    name: str
    # top-level modules int8 leaves in float: the heads (they set the scores and heatmaps need their gradients)
    float_modules: tuple[str, ...] = ()

    @abstractmethod
    def recognizes(self, header: CheckpointHeader) -> bool:
        """Whether the file is a model of this family (from its metadata or tensor names alone)."""

    @abstractmethod
    def load(
        self,
        header: CheckpointHeader,
        side_files: Mapping[str, Path],
        device: torch.device,
        dtype: torch.dtype,
        settings: ModelSettings,
    ) -> LoadedModel:
        """Check the layout against the architecture, then load strictly onto ``device`` in ``dtype``."""

    @abstractmethod
    def preprocessor_for(
        self, header: CheckpointHeader, side_files: Mapping[str, Path], settings: ModelSettings
    ) -> Preprocessor:
        """The model's preprocessing from its header alone (no weights read: decode workers need only this)."""

    @abstractmethod
    def forward(self, model: nn.Module | Any, batch: ModelInput) -> torch.Tensor:
        """A batch of model inputs (on the model's device) → probabilities [B, tags]."""

    def auto_dtype(self, device: torch.device) -> torch.dtype:
        """The precision "auto" picks: fp32 on the CPU, fp16 on a GPU (as RedRocket's JTP-1 demo runs)."""
        return torch.float32 if device.type == "cpu" else torch.float16
