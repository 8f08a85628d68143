"""The JTP-1 family behind the common interface: recognised by its timm ViT keys, inputs ``{"pixels"}``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from ...errors import CheckpointError
from ..base import Labels, LoadedModel, ModelFamily, ModelInput, ModelSettings
from ..header import CheckpointHeader
from .architecture import HEAD_MODULES, INPUT_SIZE, infer_config
from .checkpoint import load_model
from .fast_jpeg import preprocess_file
from .gpu_preprocess import preprocess_image_batch
from .preprocess import preprocess_image_tensor, preprocess_pil

TAGS_FILE = "tags.json"


@dataclass(frozen=True)
class PilotPreprocessor:
    """RedRocket's reference: fit into ``size``² with Pillow's LANCZOS, gray composite, [-1, 1], centre pad."""

    size: int = INPUT_SIZE

    def from_pil(self, image: Image.Image) -> ModelInput:
        return {"pixels": preprocess_pil(image, self.size)}

    def from_file(self, path: Path, fast_jpeg: bool = False) -> ModelInput:
        return {"pixels": preprocess_file(path, self.size, fast_jpeg)}

    def from_image_tensor(self, images: torch.Tensor, mask: torch.Tensor | None, device: torch.device) -> ModelInput:
        # on CUDA the same fit as matrix products (bit-exact with Pillow); elsewhere Pillow itself
        if torch.device(device).type == "cuda":
            return {"pixels": preprocess_image_batch(images, mask, self.size, device=device)}
        return {"pixels": preprocess_image_tensor(images, mask, self.size)}


class PilotFamily(ModelFamily):
    name = "pilot"
    float_modules = HEAD_MODULES

    def recognizes(self, header: CheckpointHeader) -> bool:
        shapes = header.shapes
        return "patch_embed.proj.weight" in shapes and ("head.weight" in shapes or "head.linear.weight" in shapes)

    def load(
        self,
        header: CheckpointHeader,
        side_files: Mapping[str, Path],
        device: torch.device,
        dtype: torch.dtype,
        settings: ModelSettings,
    ) -> LoadedModel:
        tags = side_files.get("tags")
        if tags is None:
            raise CheckpointError(f"{header.path}: a JTP-1 model needs its {TAGS_FILE} beside the weights")
        loaded = load_model(header.path, tags, device=device, dtype=dtype)
        return LoadedModel(
            family=self,
            variant=loaded.variant,
            model=loaded.model,
            labels=Labels(tags=loaded.tags),
            preprocessor=PilotPreprocessor(loaded.config.img_size),
            metadata=header.metadata,
        )

    def preprocessor_for(
        self, header: CheckpointHeader, side_files: Mapping[str, Path], settings: ModelSettings
    ) -> PilotPreprocessor:
        try:
            return PilotPreprocessor(infer_config(header.shapes).img_size)
        except CheckpointError as error:
            raise CheckpointError(f"{header.path}: not a JTP-1 (PILOT) checkpoint: {error}") from None

    def forward(self, model: nn.Module, batch: ModelInput) -> torch.Tensor:
        return model(batch["pixels"])
