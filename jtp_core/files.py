"""Where model files live, how a name or folder resolves to them, and downloading what is missing.

A model folder holds one ``.safetensors`` file and its ``tags.json``. Known models live in
``<models dir>/<model name>/``; the first models dir is where downloads go.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import DownloadError, ModelNotFoundError, TagTableError
from .known_models import KNOWN_MODELS, KNOWN_TAG_TABLES, ModelSpec, TagTableSpec

MODELS_DIR_ENV = "JTP_MODELS_DIR"
WEIGHT_SUFFIXES = (".safetensors", ".sft")


@dataclass(frozen=True)
class ModelFiles:
    name: str
    weights: Path
    tags: Path


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
    """The weights and tags.json in ``folder``, or None when either is absent.

    A folder with several weight files is ambiguous and gets an error rather than a guess.
    """
    folder = Path(folder)
    tags = folder / "tags.json"
    if not folder.is_dir() or not tags.is_file():
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
    return ModelFiles(name=name or folder.name, weights=weights[0], tags=tags)


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
    if not download:
        raise ModelNotFoundError(
            f"{name} is not downloaded; put {spec.weights_file} and {spec.tags_file} in {models_dirs[0] / name}"
        )
    return download_model(spec, models_dirs[0])


def download_model(spec: ModelSpec, models_dir: Path, endpoint: str | None = None) -> ModelFiles:
    """Fetch a known model's missing files into ``<models_dir>/<name>/`` with huggingface_hub.

    huggingface_hub writes to a temporary file and renames it when complete, and honours ``HF_ENDPOINT``,
    ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and its progress-bar settings; a failed download leaves no file that
    could later be taken for the model. ``endpoint`` overrides ``HF_ENDPOINT`` (a mirror, or a test hub).
    """
    folder = Path(models_dir) / spec.name
    try:
        for repo_path, file_name in zip(spec.repo_paths, (spec.weights_file, spec.tags_file), strict=True):
            if not (folder / file_name).is_file():
                _download_file(spec, repo_path, folder / file_name, endpoint)
    finally:
        _remove_empty_dirs(folder / spec.subfolder, stop=folder)
    files = find_model_files(folder, spec.name)
    if files is None:  # pragma: no cover - the loop above guarantees both files
        raise DownloadError(f"{folder} is incomplete after the download")
    return files


def _download_file(spec: ModelSpec, repo_path: str, target: Path, endpoint: str | None) -> None:
    # huggingface_hub keeps a failed download's partial data in <folder>/.cache, so the next try resumes
    by_hand = f"put {spec.weights_file} and {spec.tags_file} in {target.parent} by hand"
    _hub_download(spec.repo_id, repo_path, spec.revision, target.parent, target, endpoint, by_hand)


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
        raise DownloadError(
            f"could not download {repo_id}/{repo_path} into {target.parent}: {error}. Without network access, "
            f"{by_hand}."
        ) from error


def _files_at_path(path: Path) -> ModelFiles:
    if path.is_dir():
        files = find_model_files(path)
        if files is None:
            raise ModelNotFoundError(f"{path} needs one .safetensors weights file and a tags.json beside it")
        return files
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise ModelNotFoundError(f"{path}: weights must be a .safetensors file (pickled checkpoints are not loaded)")
    tags = path.parent / "tags.json"
    if not tags.is_file():
        raise ModelNotFoundError(f"no tags.json beside {path}")
    return ModelFiles(name=path.parent.name, weights=path, tags=tags)


def _remove_empty_dirs(path: Path, stop: Path) -> None:
    while path != stop and path.is_dir() and not any(path.iterdir()):
        shutil.rmtree(path)
        path = path.parent


def list_tag_tables(models_dirs: list[Path]) -> list[str]:
    """Known tag tables (downloadable) followed by other ``.csv`` files found in the models dirs."""
    local = {path.name for models_dir in models_dirs for path in Path(models_dir).glob("*.csv") if path.is_file()}
    return list(KNOWN_TAG_TABLES) + sorted(local - set(KNOWN_TAG_TABLES))


def resolve_tag_table(table: str | Path, models_dirs: list[Path] | None = None, download: bool = True) -> Path:
    """A tag table CSV path, or the name of one in a models dir (a known one is downloaded there if missing).

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
    if not download:
        raise TagTableError(
            f"{name} is not downloaded; put it in {models_dirs[0]} (from {spec.repo_id}, {spec.repo_path})"
        )
    return download_tag_table(spec, models_dirs[0])


def download_tag_table(spec: TagTableSpec, models_dir: Path, endpoint: str | None = None) -> Path:
    """Fetch a known tag table into ``<models_dir>/<name>`` with huggingface_hub (same settings as models)."""
    target = Path(models_dir) / spec.name
    staging = Path(models_dir) / ".tag-table-download"  # hidden, so a half download is never listed
    try:
        by_hand = f"put {spec.name} in {models_dir} by hand"
        _hub_download(spec.repo_id, spec.repo_path, spec.revision, staging, target, endpoint, by_hand)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a small file: nothing worth resuming
    return target
