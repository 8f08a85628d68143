"""What every model family offers the rest of the core: load → preprocess a batch → probabilities → labels.

A *model input* is a ``dict`` of tensors. For one image it has no batch dimension and lives on the CPU; a
batch is the same keys stacked (every image of a family has the same shapes: PILOT pads to 384², Hydra pads
its patch sequence to the sequence length). ``family.forward(model, batch)`` returns float32 probabilities
[B, tags]; nothing outside a family knows what the keys are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

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


# Which RedRocket tool's rules turn a model's probabilities into tags (see tags/selection.py):
# "jtp1" PILOT's demo (p > threshold, the project's table-based implications), "jtp3" the JTP-3 release
# (implications applied before the threshold, p >= threshold), "hydra" the Hydra package (decide first).
RULES = ("jtp1", "jtp3", "hydra")


@dataclass(eq=False)
class Labels:
    """A model's outputs: tag names in output order (e621 spelling) and what its files say about them."""

    tags: list[str]
    categories: list[str] | None = None  # category name per output, when the files carry them
    implications: Mapping[str, tuple[str, ...]] | None = None  # implied tags per tag, when the files carry them
    validation: torch.Tensor | None = None  # [tags, thresholds, 4] validation counts (TP, FP, TN, FN), if any
    validation_csv: Path | None = None  # JTP-3's per-tag validation rows, for calibrated thresholds
    rules: str = "jtp1"
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rules not in RULES:
            raise ValueError(f"rules must be one of {', '.join(RULES)}; got {self.rules!r}")
        if self.categories is not None and len(self.categories) != len(self.tags):
            raise ValueError(f"{len(self.categories)} categories for {len(self.tags)} tags")

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """Derived data (implication graph, calibrated thresholds, lookups) computed once per model."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


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
    # RedRocket's own code: PILOT's demo keeps p > threshold, the Hydra tools keep p >= threshold
    inclusive_threshold: bool = False
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
    def forward(self, model: nn.Module | Any, batch: ModelInput) -> torch.Tensor:
        """A batch of model inputs (on the model's device) → probabilities [B, tags]."""

    def auto_dtype(self, device: torch.device) -> torch.dtype:
        """The precision "auto" picks: fp32 on the CPU, fp16 on a GPU (as RedRocket's JTP-1 demo runs)."""
        return torch.float32 if device.type == "cpu" else torch.float16

    def describe(self, loaded: LoadedModel) -> str:
        return f"{self.name} ({loaded.variant}, {len(loaded.labels.tags)} tags)"
