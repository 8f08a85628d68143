"""The Hydra family behind the common interface: JTP-3 Hydra (``+rr_hydra``) and Hydra 3.5 (``+rr_hydra2``).

Recognised by ``modelspec.architecture`` (or, for a file without metadata, the NaFlex backbone's keys). Inputs are
``{"patches", "coords", "valid"}`` padded to the sequence length; labels come from the file's metadata, and for
JTP-3 categories, implications and validation rows from the CSVs beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ...errors import CheckpointError, TagTableError
from ...hub.known_models import TAG_TABLE, VALIDATION
from ..base import Labels, LoadedModel, ModelFamily, ModelInput, ModelSettings
from ..header import CheckpointHeader
from .checkpoint import load_hydra
from .preprocess import NaFlexPreprocessor
from .resize import MAX_SEQ as MAX_SEQUENCE
from .resize import MIN_SEQ as MIN_SEQUENCE

ARCHITECTURE_PREFIX = "naflexvit_so400m_patch16_siglip"
DEFAULT_SEQUENCE_LENGTH = 1024  # patches per image, as both releases default to
RULES = {"rr_hydra": "jtp3", "rr_hydra2": "hydra"}  # whose tool's selection rules apply (tags/selection.py)


class HydraFamily(ModelFamily):
    name = "hydra"
    float_modules = ("attn_pool", "head", "embeds")  # the patch embedding too, as JTP-1's (a convolution) stays

    def recognizes(self, header: CheckpointHeader) -> bool:
        architecture = header.metadata.get("modelspec.architecture", "")
        return architecture.startswith(ARCHITECTURE_PREFIX) or "embeds.proj.weight" in header.shapes

    def auto_dtype(self, device: torch.device) -> torch.dtype:
        # RedRocket runs these bf16 weights in bf16 on a GPU; on the CPU fp32 evaluates them without extra rounding
        return torch.float32 if device.type == "cpu" else torch.bfloat16

    def load(
        self,
        header: CheckpointHeader,
        side_files: Mapping[str, Path],
        device: torch.device,
        dtype: torch.dtype,
        settings: ModelSettings,
    ) -> LoadedModel:
        loaded = load_hydra(header.path, device=device, dtype=dtype)
        categories, implications = loaded.categories, loaded.implications
        table_path = side_files.get(TAG_TABLE)
        if categories is None and table_path is not None:  # JTP-3 keeps them in its tags CSV
            categories, implications = _from_tag_table(table_path, loaded.tags)
        labels = Labels(
            tags=loaded.tags,
            categories=categories,
            implications=implications,
            validation=loaded.validation,
            validation_csv=side_files.get(VALIDATION),
            rules=RULES[loaded.variant],
        )
        return LoadedModel(
            family=self,
            variant=loaded.variant,
            model=loaded.model,
            labels=labels,
            preprocessor=self.preprocessor_for(header, side_files, settings),
            metadata=loaded.metadata,
        )

    def preprocessor_for(
        self, header: CheckpointHeader, side_files: Mapping[str, Path], settings: ModelSettings
    ) -> NaFlexPreprocessor:
        length = settings.sequence_length or DEFAULT_SEQUENCE_LENGTH
        if not MIN_SEQUENCE <= length <= MAX_SEQUENCE:
            raise ValueError(
                f"sequence length must be {MIN_SEQUENCE}-{MAX_SEQUENCE} patches per image (1024 as trained); "
                f"got {length}"
            )
        try:
            return NaFlexPreprocessor.from_metadata(header.metadata, max_seq=length)
        except ValueError as error:  # classifier.background / classifier.resize
            raise CheckpointError(f"{header.path}: {error}") from None

    def forward(self, model: nn.Module, batch: ModelInput) -> torch.Tensor:
        return model(batch["patches"], batch["coords"], batch["valid"])


def _from_tag_table(path: Path, tags: list[str]) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    from ...tags.tag_table import read_tag_table  # deferred: only JTP-3 folders have one

    try:
        table = read_tag_table(path)
    except TagTableError as error:
        raise CheckpointError(f"the tag table beside the model is unusable: {error}") from None
    return [table.category(tag) for tag in tags], {tag: table.implied(tag) for tag in tags}
