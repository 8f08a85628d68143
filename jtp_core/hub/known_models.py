"""The models and tag tables the project knows how to fetch. Adding a model is one entry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

# roles of a model's files; a model folder holds one weights file and any of the side files
WEIGHTS = "weights"
TAGS_JSON = "tags"  # JTP-1: {tag: index}
TAG_TABLE = "tag_table"  # tag,category,implications CSV (JTP-3)
VALIDATION = "validation"  # per-tag validation counts at many thresholds (JTP-3's val CSV), for calibration


@dataclass(frozen=True)
class RepoFile:
    repo_path: str  # inside the Hugging Face repo
    role: str

    @property
    def name(self) -> str:
        """The file's name in the model folder: repo subfolders are flattened away."""
        return PurePosixPath(self.repo_path).name


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo_id: str
    files: tuple[RepoFile, ...]
    family: str  # "pilot" or "hydra" (jtp_core.families)
    summary: str = ""
    revision: str = "main"
    size_bytes: int | None = None  # of the weights file

    @property
    def weights_file(self) -> str:
        return next(file.name for file in self.files if file.role == WEIGHTS)

    def file_name(self, role: str) -> str | None:
        return next((file.name for file in self.files if file.role == role), None)


KNOWN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="JTP_PILOT",
            repo_id="RedRocket/JointTaggerProject",
            files=(
                RepoFile("JTP_PILOT/JTP_PILOT-e4-vit_so400m_patch14_siglip_384.safetensors", WEIGHTS),
                RepoFile("JTP_PILOT/tags.json", TAGS_JSON),
            ),
            family="pilot",
            summary="JTP-1 PILOT: SigLIP So400m at 384², 9,083 tags, linear head",
            size_bytes=1_754_826_092,
        ),
        ModelSpec(
            name="JTP_PILOT2",
            repo_id="RedRocket/JointTaggerProject",
            files=(
                RepoFile("JTP_PILOT2/JTP_PILOT2-e3-vit_so400m_patch14_siglip_384.safetensors", WEIGHTS),
                RepoFile("JTP_PILOT2/tags.json", TAGS_JSON),
            ),
            family="pilot",
            summary="JTP-1.1 PILOT2: SigLIP So400m at 384², 9,083 tags, gated head",
        ),
        ModelSpec(
            name="JTP_3_HYDRA",
            repo_id="RedRocket/JTP-3",
            files=(
                RepoFile("models/jtp-3-hydra.safetensors", WEIGHTS),
                RepoFile("data/jtp-3-hydra-tags.csv", TAG_TABLE),
                RepoFile("data/jtp-3-hydra-val.csv", VALIDATION),
            ),
            family="hydra",
            summary="JTP-3 Hydra: NaFlex SigLIP2 So400m/16, 7,504 tags with ratings, per-tag attention heads",
            size_bytes=1_002_587_984,
        ),
        ModelSpec(
            name="HYDRA_3_5",
            repo_id="RedRocket/Hydra",
            files=(RepoFile("models/hydra-3.5.safetensors", WEIGHTS),),
            family="hydra",
            summary="Hydra 3.5: NaFlex SigLIP2 So400m/16, ~8,900 tags; labels, implications and calibration inside",
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
