"""Model families. Each package owns its architecture, checkpoint layout, preprocessing and labels behind
the interface in ``base``; the rest of the core talks only to that interface.

Adding a family is one package plus one entry in ``FAMILIES``; the family is chosen from the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .base import Labels, LoadedModel, ModelFamily, ModelInput, ModelSettings, Preprocessor
from .header import CheckpointHeader, read_header
from .hydra import HYDRA
from .pilot import PILOT

FAMILIES: tuple[ModelFamily, ...] = (PILOT, HYDRA)


def family_of(header: CheckpointHeader) -> ModelFamily:
    """The family whose files look like this one; CheckpointError naming the file when none does."""
    for family in FAMILIES:
        if family.recognizes(header):
            return family
    architecture = header.metadata.get("modelspec.architecture")
    found = f"its modelspec.architecture is {architecture!r}" if architecture else "no known tensor layout"
    raise CheckpointError(
        f"{header.path} is not a JTP checkpoint ({found}); known families: "
        + ", ".join(family.name for family in FAMILIES)
    )


def load_checkpoint(
    weights: Path,
    side_files: Mapping[str, Path] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = torch.float32,
    settings: ModelSettings | None = None,
    runs_on: torch.device | str | None = None,
) -> LoadedModel:
    """Read the header, pick the family, and load the model strictly (safetensors only, never unpickled).

    ``dtype=None`` lets the family choose for the device the model will run on (``runs_on``, default ``device``;
    ComfyUI loads onto the CPU what later runs on the GPU).
    """
    header = read_header(weights)
    family = family_of(header)
    device = torch.device(device)
    if dtype is None:
        dtype = family.auto_dtype(torch.device(runs_on) if runs_on is not None else device)
    return family.load(header, dict(side_files or {}), device, dtype, settings or ModelSettings())


__all__ = [
    "FAMILIES",
    "CheckpointHeader",
    "Labels",
    "LoadedModel",
    "ModelFamily",
    "ModelInput",
    "ModelSettings",
    "Preprocessor",
    "family_of",
    "load_checkpoint",
    "read_header",
]
