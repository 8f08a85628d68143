"""Where model files live, how a name or folder resolves to them, and downloading what is missing.

A model folder holds one ``.safetensors`` file and its side files: ``tags.json`` for JTP-1; nothing for Hydra 3.5
(its labels are inside the weights); the tag table and validation CSVs for JTP-3. Known models live in
``<models dir>/<model name>/``; the first models dir is where downloads go.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError, DownloadError, ModelNotFoundError, TagTableError
from .known_models import KNOWN_MODELS, KNOWN_TAG_TABLES, TAG_TABLE, TAGS_JSON, VALIDATION, ModelSpec, TagTableSpec
from .network import clean_failed_download, hub_offline, unreachable_reason

MODELS_DIR_ENV = "JTP_MODELS_DIR"
WEIGHT_SUFFIXES = (".safetensors", ".sft")
LABELS_KEY = "classifier.labels"  # a weights file that names its own tags needs no tags.json


@dataclass(frozen=True)
class ModelFiles:
    name: str
    weights: Path
    side_files: Mapping[str, Path] = field(default_factory=dict)  # role (known_models) → path

    @property
    def tags(self) -> Path | None:
        return self.side_files.get(TAGS_JSON)


def side_files_in(folder: Path) -> dict[str, Path]:
    """The side files a model folder holds, by role: ``tags.json``, ``*tags.csv``, ``*val.csv``."""
    found: dict[str, Path] = {}
    if (folder / "tags.json").is_file():
        found[TAGS_JSON] = folder / "tags.json"
    for path in sorted(folder.glob("*.csv")):
        role = TAG_TABLE if path.name.endswith("tags.csv") else VALIDATION if path.name.endswith("val.csv") else None
        if role is not None and path.is_file():
            found.setdefault(role, path)
    return found


def names_own_labels(weights: Path) -> bool:
    """Whether the weights' header carries the tag names (the Hydra family), so no tags.json is needed."""
    from ..families.header import read_header  # deferred: keeps listing folders free of torch

    try:
        return LABELS_KEY in read_header(weights).metadata
    except CheckpointError:
        return False


def default_models_dir() -> Path:
    """``$JTP_MODELS_DIR``; else the host's ``models/jtp`` when this pack sits in ComfyUI's
    ``custom_nodes/`` or the WebUI's ``extensions/``; else ``~/.cache/jtp-tagger/models``."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    pack_dir = Path(__file__).resolve().parent.parent
    if pack_dir.parent.name in ("custom_nodes", "extensions") and (pack_dir.parent.parent / "models").is_dir():
        return pack_dir.parent.parent / "models" / "jtp"
    return Path.home() / ".cache" / "jtp-tagger" / "models"


def find_model_files(folder: Path, name: str | None = None) -> ModelFiles | None:
    """The weights and side files in ``folder``, or None when it is no model folder.

    A model folder has one weights file and either a ``tags.json`` or weights that name their own tags. A
    folder with several weight files is ambiguous and gets an error rather than a guess.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    weights = sorted(path for path in folder.iterdir() if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file())
    if not weights:
        return None
    spec = KNOWN_MODELS.get(name or folder.name)
    preferred = [path for path in weights if spec is not None and path.name == spec.weights_file]
    if preferred:
        weights = preferred
    if len(weights) > 1:
        names = ", ".join(path.name for path in weights)
        raise ModelNotFoundError(f"{folder} holds several weight files ({names}); keep one per model folder")
    side_files = side_files_in(folder)
    if TAGS_JSON not in side_files and not names_own_labels(weights[0]):
        return None
    return ModelFiles(name=name or folder.name, weights=weights[0], side_files=side_files)


def list_local_models(models_dirs: list[Path]) -> dict[str, ModelFiles]:
    """Model folders present in the models dirs, by folder name (the first dir wins on a clash)."""
    found: dict[str, ModelFiles] = {}
    for models_dir in models_dirs:
        if not Path(models_dir).is_dir():
            continue
        for folder in sorted(Path(models_dir).iterdir()):
            if folder.name.startswith(".") or folder.name in found:
                continue
            try:
                files = find_model_files(folder)
            except ModelNotFoundError:
                continue
            if files is not None:
                found[folder.name] = files
    return found


def available_models(models_dirs: list[Path]) -> list[str]:
    """Known models (downloadable) followed by other model folders found on disk."""
    local = list_local_models(models_dirs)
    return list(KNOWN_MODELS) + sorted(name for name in local if name not in KNOWN_MODELS)


def resolve_model(
    model: str | Path,
    models_dirs: list[Path] | None = None,
    download: bool = True,
) -> ModelFiles:
    """A model name, model folder, or weights file → files on disk, downloading a known model if needed.

    With the files present nothing touches the network.
    """
    models_dirs = [Path(path) for path in (models_dirs or [default_models_dir()])]
    path = Path(model).expanduser()
    if path.exists():
        return _files_at_path(path)
    name = str(model)
    for models_dir in models_dirs:
        files = find_model_files(models_dir / name, name)
        if files is not None:
            return files
    spec = KNOWN_MODELS.get(name)
    if spec is None:
        choices = ", ".join(available_models(models_dirs))
        raise ModelNotFoundError(f"unknown model {name!r}: not a folder, and not one of: {choices}")
    if not download or hub_offline():
        by_hand = _by_hand(spec, models_dirs[0] / name)
        raise ModelNotFoundError(f"{name} is not downloaded{_offline_note(download)}; {by_hand}")
    return download_model(spec, models_dirs[0])


def download_model(spec: ModelSpec, models_dir: Path, endpoint: str | None = None) -> ModelFiles:
    """Fetch a known model's missing files into ``<models_dir>/<name>/`` with huggingface_hub.

    huggingface_hub writes to a temporary file and renames it when complete, and honours ``HF_ENDPOINT``,
    ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and its progress-bar settings; a failed download leaves no file that
    could later be taken for the model. ``endpoint`` overrides ``HF_ENDPOINT`` (a mirror, or a test hub).
    """
    folder = Path(models_dir) / spec.name
    missing = [file for file in spec.files if not (folder / file.name).is_file()]
    if missing:
        _check_hub(endpoint, spec.name, _by_hand(spec, folder))
    try:
        for file in spec.files:
            if not (folder / file.name).is_file():
                # huggingface_hub keeps a failed download's partial data in <folder>/.cache, so the next try resumes
                _hub_download(
                    spec.repo_id, file.repo_path, spec.revision, folder, folder / file.name, endpoint,
                    _by_hand(spec, folder),
                )
    except BaseException as error:
        _remove_repo_subfolders(spec, folder)
        if isinstance(error, DownloadError):  # no empty .cache, stale .lock or empty folder; partial data stays
            clean_failed_download(folder)
        raise
    _remove_repo_subfolders(spec, folder)
    files = find_model_files(folder, spec.name)
    if files is None:  # pragma: no cover - the loop above guarantees the files
        raise DownloadError(f"{folder} is incomplete after the download")
    return files


def _remove_repo_subfolders(spec: ModelSpec, folder: Path) -> None:
    for file in spec.files:
        _remove_empty_dirs((folder / file.repo_path).parent, stop=folder)


def _offline_note(download: bool) -> str:
    return " (HF_HUB_OFFLINE is set)" if download else ""


def _check_hub(endpoint: str | None, what: str, by_hand: str) -> None:
    """Fail at once, with the by-hand advice, when downloading is switched off or the hub cannot be reached."""
    if hub_offline():
        raise DownloadError(f"{what} is not downloaded (HF_HUB_OFFLINE is set); {by_hand}")
    reason = unreachable_reason(endpoint)
    if reason is not None:
        raise DownloadError(f"cannot download {what}: {reason}. Without network access, {by_hand}")


def _by_hand(spec: ModelSpec, folder: Path) -> str:
    names = ", ".join(file.name for file in spec.files)
    return f"put {names} (from the Hugging Face repo {spec.repo_id}) in {folder} by hand"


def _hub_download(
    repo_id: str, repo_path: str, revision: str, local_dir: Path, target: Path, endpoint: str | None, by_hand: str
) -> None:
    """Download one file with huggingface_hub into ``local_dir`` and move it to ``target`` when complete."""
    from huggingface_hub import hf_hub_download  # deferred: only needed when something is missing

    try:
        # huggingface_hub 0.23-0.2x resumes a failed download without recreating the file's folder, which a
        # failed try removed (nothing half-done may look like a model): make it first
        (Path(local_dir) / repo_path).parent.mkdir(parents=True, exist_ok=True)
        fetched = Path(hf_hub_download(repo_id, repo_path, revision=revision, local_dir=local_dir, endpoint=endpoint))
        if fetched.resolve() != target.resolve():
            os.replace(fetched, target)  # the repo's subfolders are flattened away
    except Exception as error:  # huggingface_hub and its HTTP client raise many kinds; all mean "not fetched"
        reason = str(error).strip().rstrip(".") or type(error).__name__  # the hub's texts end with a period
        raise DownloadError(
            f"could not download {repo_id}/{repo_path} into {target.parent}: {reason}. Without network access, "
            f"{by_hand}"
        ) from error


def _files_at_path(path: Path) -> ModelFiles:
    if path.is_dir():
        files = find_model_files(path)
        if files is None:
            raise ModelNotFoundError(
                f"{path} needs one .safetensors weights file, and a tags.json beside it unless the weights name "
                "their own tags (Hydra)"
            )
        return files
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ModelNotFoundError(f"{path}: weights must be a .safetensors file (pickled checkpoints are not loaded)")
    side_files = side_files_in(path.parent)
    if TAGS_JSON not in side_files and not names_own_labels(path):
        raise ModelNotFoundError(f"no tags.json beside {path}, and the file does not name its own tags")
    return ModelFiles(name=path.parent.name, weights=path, side_files=side_files)


def _remove_empty_dirs(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        shutil.rmtree(path)
        path = path.parent


def list_tag_tables(models_dirs: list[Path]) -> list[str]:
    """Known tag tables (downloadable) followed by other ``.csv`` files found in the models dirs."""
    local = {path.name for models_dir in models_dirs for path in Path(models_dir).glob("*.csv") if path.is_file()}
    return list(KNOWN_TAG_TABLES) + sorted(local - set(KNOWN_TAG_TABLES))


def resolve_tag_table(table: str | Path, models_dirs: list[Path] | None = None, download: bool = True) -> Path:
    """A tag table CSV path, or the name of one in a models dir (a known one is also found in the folder of the
    known model it comes with, else downloaded into the models dir).

    With the file present nothing touches the network.
    """
    models_dirs = [Path(path) for path in (models_dirs or [default_models_dir()])]
    path = Path(table).expanduser()
    if path.is_file():
        return path
    name = str(table)
    for models_dir in models_dirs:
        if (models_dir / name).is_file():
            return models_dir / name
    spec = KNOWN_TAG_TABLES.get(name)
    if spec is None:
        choices = ", ".join(list_tag_tables(models_dirs))
        raise TagTableError(f"tag table {name!r} is not a file, and not one of: {choices}")
    for models_dir in models_dirs:  # the same file, downloaded with its model (JTP_3_HYDRA ships this table)
        for model_folder in _model_folders_shipping(spec):
            if (models_dir / model_folder / name).is_file():
                return models_dir / model_folder / name
    if not download or hub_offline():
        raise TagTableError(
            f"{name} is not downloaded{_offline_note(download)}; put it in {models_dirs[0]} (from {spec.repo_id}, "
            f"{spec.repo_path})"
        )
    return download_tag_table(spec, models_dirs[0])


def _model_folders_shipping(spec: TagTableSpec) -> list[str]:
    """Folders of known models whose files include this very table (same repo, path and revision)."""
    return [
        model.name for model in KNOWN_MODELS.values()
        if model.repo_id == spec.repo_id and model.revision == spec.revision
        and any(file.repo_path == spec.repo_path and file.name == spec.name for file in model.files)
    ]


def download_tag_table(spec: TagTableSpec, models_dir: Path, endpoint: str | None = None) -> Path:
    """Fetch a known tag table into ``<models_dir>/<name>`` with huggingface_hub (same settings as models)."""
    target = Path(models_dir) / spec.name
    staging = Path(models_dir) / ".tag-table-download"  # hidden, so a half download is never listed
    by_hand = f"put {spec.name} in {models_dir} by hand"
    _check_hub(endpoint, spec.name, by_hand)
    try:
        _hub_download(spec.repo_id, spec.repo_path, spec.revision, staging, target, endpoint, by_hand)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a small file: nothing worth resuming
    return target
