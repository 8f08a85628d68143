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


@dataclass(frozen=True)
class TagTableSpec:
    """A tag table CSV (tag, category, implications) fetched like a model file, kept as ``<models dir>/<name>``."""

    name: str  # the file name in the models dir, also what users pick
    repo_id: str
    repo_path: str
    revision: str = "main"


# JTP-3's table covers 6,155 of PILOT's 9,083 tags; its categories and implications apply to PILOT output too
KNOWN_TAG_TABLES: dict[str, TagTableSpec] = {
    spec.name: spec
    for spec in (
        TagTableSpec(name="jtp-3-hydra-tags.csv", repo_id="RedRocket/JTP-3", repo_path="data/jtp-3-hydra-tags.csv"),
    )
}

DEFAULT_TAG_TABLE = "jtp-3-hydra-tags.csv"
