"""The table of models the project knows how to fetch. Adding a model is one entry."""

from __future__ import annotations

from dataclasses import dataclass

LINEAR = "linear"  # JTP-1 PILOT: Linear(width, N) then sigmoid
GATED = "gated"  # JTP-1.1 PILOT2: Linear(width, 2N), sigmoid(a) * sigmoid(b)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo_id: str
    subfolder: str
    weights_file: str
    variant: str
    tags_file: str = "tags.json"
    revision: str = "main"
    size_bytes: int | None = None

    @property
    def repo_paths(self) -> tuple[str, str]:
        """Paths of the weights and tags files inside the Hugging Face repo."""
        return f"{self.subfolder}/{self.weights_file}", f"{self.subfolder}/{self.tags_file}"


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="JTP_PILOT",
            repo_id="RedRocket/JointTaggerProject",
            subfolder="JTP_PILOT",
            weights_file="JTP_PILOT-e4-vit_so400m_patch14_siglip_384.safetensors",
            variant=LINEAR,
            size_bytes=1_754_826_092,
        ),
        ModelSpec(
            name="JTP_PILOT2",
            repo_id="RedRocket/JointTaggerProject",
            subfolder="JTP_PILOT2",
            weights_file="JTP_PILOT2-e3-vit_so400m_patch14_siglip_384.safetensors",
            variant=GATED,
        ),
    )
}

DEFAULT_MODEL = "JTP_PILOT"
