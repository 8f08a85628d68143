"""A dataset captioning job: what to read, which model and options, where the result goes; its fingerprint;
and the manifest that makes a rerun resume exactly where the last run stopped.

Layout of a job's output folder::

    _jtp_manifest.json        fingerprint, readable settings, the planned units, the units done
    parts/<unit>.parquet      rows of one unit (local engine), renamed into place when complete
    parts/<wave>/…            rows of several units (Ray engine: Ray's own per-block files), renamed as a folder
    _staging/                 work in progress; wiped when a run starts

A unit is the grain of resuming: one WebDataset shard, one Parquet file, or ``unit_size`` images of a folder or
list file (in sorted order, fixed when the job is first planned, so a rerun sees the same units).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..captioning.atomic_write import atomic_write_text, clean_stale_temp_files
from ..errors import JTPError
from ..tags.postprocess import TagOptions

MANIFEST = "_jtp_manifest.json"
PARTS = "parts"
STAGING = "_staging"
UNITS_FILE = "_units.json"  # inside a Ray wave folder: the units whose rows it holds
FORMAT = 1
SOURCE_KINDS = ("auto", "folder", "list", "webdataset", "parquet")
IMAGE_MEMBERS = ("jpg", "jpeg", "png", "webp")


class JobError(JTPError):
    """A job cannot start or resume as asked (changed settings, unreadable input, bad column...)."""


@dataclass(frozen=True)
class SourceSpec:
    """Where the images are. ``kind="auto"`` decides per path: folder, ``.tar`` shard, ``.parquet`` file, or a
    list file (any other file: one image path per line, relative to the list file's folder)."""

    paths: tuple[str, ...]
    kind: str = "auto"
    recursive: bool = True
    unit_size: int = 1000  # images per unit for folders and list files
    image_column: str | None = None  # Parquet: image bytes (binary, or a struct with "bytes" as HF datasets write)
    path_column: str | None = None  # Parquet: image paths instead of bytes (relative to the Parquet file's folder)
    key_column: str | None = None  # Parquet: a unique id per row (default: "key" when present, else file:row)
    image_members: tuple[str, ...] = IMAGE_MEMBERS  # WebDataset: extensions that hold the image, first found wins

    def __post_init__(self) -> None:
        if isinstance(self.paths, (str, Path)):
            object.__setattr__(self, "paths", (str(self.paths),))
        object.__setattr__(self, "paths", tuple(str(path) for path in self.paths))
        if not self.paths:
            raise ValueError("give at least one folder, list file, shard or Parquet file")
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {', '.join(SOURCE_KINDS)}; got {self.kind!r}")
        if self.unit_size < 1:
            raise ValueError("unit_size must be at least 1")
        if self.image_column and self.path_column:
            raise ValueError("give an image column or a path column, not both")
        object.__setattr__(self, "image_members", tuple(ext.lstrip(".").lower() for ext in self.image_members))


@dataclass(frozen=True)
class MergeSpec:
    """Supplement existing captions instead of replacing them.

    ``existing``: where the human caption is: ``txt`` (the ``.txt`` beside an image, or a shard's ``txt`` member),
    ``column:NAME`` (Parquet), ``member:EXT`` or ``member:json:FIELD`` (a shard member; JSON: that field, a string
    or a list of tags). None = no merge: the caption is the model's tags alone.
    """

    existing: str | None = None
    drop_implied: bool = False  # drop model tags a human tag (or a kept tag) implies; needs a tag table
    aliases: str | None = None  # e621 tag_aliases CSV (antecedent_name, consequent_name): alias-insensitive match

    def __post_init__(self) -> None:
        if self.existing is not None:
            parse_existing(self.existing)

    @property
    def enabled(self) -> bool:
        return self.existing is not None


def parse_existing(spec: str) -> tuple[str, str, str | None]:
    """``txt`` → ("txt", "txt", None); ``column:c`` → ("column", "c", None); ``member:json:tags`` → ("member",
    "json", "tags"); ValueError naming the accepted forms otherwise."""
    parts = spec.split(":")
    if parts == ["txt"]:
        return "txt", "txt", None
    if len(parts) == 2 and parts[0] == "column" and parts[1]:
        return "column", parts[1], None
    if len(parts) in (2, 3) and parts[0] == "member" and parts[1]:
        member = parts[1].lstrip(".").lower()
        if member == "json":
            return "member", member, parts[2] if len(parts) == 3 and parts[2] else "caption"
        if len(parts) == 2:
            return "member", member, None
    raise ValueError(f"existing captions must be txt, column:NAME, member:EXT or member:json:FIELD; got {spec!r}")


@dataclass
class DatasetJob:
    source: SourceSpec
    model: str
    output: Path
    options: TagOptions = field(default_factory=TagOptions)
    merge: MergeSpec = field(default_factory=MergeSpec)
    near_margin: float = 0.1  # also record tags scoring within this below the threshold (for review)
    device: str = "auto"
    precision: str = "auto"
    sequence_length: int | None = None
    batch_size: int | None = None  # None = the device's default
    workers: int | None = None  # local engine: decode threads
    fast_jpeg: bool = False
    models_dirs: list[Path] | None = None
    download: bool = True

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if not 0 <= self.near_margin < 1:
            raise ValueError("near_margin must be in [0, 1)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass(frozen=True)
class Unit:
    """The grain of resuming. ``inputs``: the shard or Parquet file, or the image paths of a folder chunk;
    ``root``: what folder-chunk keys are relative to."""

    id: str
    kind: str  # folder | list | webdataset | parquet
    inputs: tuple[str, ...]
    root: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "inputs": list(self.inputs), "root": self.root}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Unit:
        return cls(data["id"], data["kind"], tuple(data["inputs"]), data.get("root", ""))


# --- fingerprint -------------------------------------------------------------------------------------------


def model_revision(weights: Path, known_revision: str | None = None) -> str:
    """A short identity of the weights file: its safetensors header, size and last 4 MiB, hashed (cheap on a
    1.7 GB file, and it changes with any retrained or re-exported file); the hub revision first when known."""
    digest = hashlib.sha256()
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with weights.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        digest.update(handle.read(min(header_length, 100_000_000)))
        handle.seek(max(0, size - (4 << 20)))
        digest.update(handle.read())
    content = digest.hexdigest()[:16]
    return f"{known_revision}:{content}" if known_revision else content


def options_settings(options: TagOptions) -> dict[str, Any]:
    """TagOptions as plain JSON; the tag table by its source and size (it is too big to hash each time)."""
    settings: dict[str, Any] = {}
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if item.name == "tag_table":
            value = None if value is None else {"source": str(value.source), "tags": len(value)}
        elif isinstance(value, Mapping):
            value = {str(key): value[key] for key in sorted(value)}
        elif isinstance(value, tuple):
            value = list(value)
        settings[item.name] = value
    return settings


def job_settings(job: DatasetJob, model_name: str, revision: str) -> dict[str, Any]:
    """Everything that decides the rows' content; two runs with equal settings write identical rows."""
    source = dataclasses.asdict(job.source)
    source["paths"] = list(job.source.paths)
    source["image_members"] = list(job.source.image_members)
    return {
        "model": model_name,
        "revision": revision,
        "precision": job.precision,
        "sequence_length": job.sequence_length,
        "fast_jpeg": job.fast_jpeg,
        "near_margin": job.near_margin,
        "options": options_settings(job.options),
        "merge": dataclasses.asdict(job.merge),
        "source": source,
    }


def fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ, e.g. ``options.threshold``."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} → {b!r}")
    return changed


# --- manifest ----------------------------------------------------------------------------------------------


@dataclass
class Manifest:
    output: Path
    fingerprint: str
    settings: dict[str, Any]
    units: list[Unit]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit id → {"part": relative path, ...}

    @property
    def path(self) -> Path:
        return self.output / MANIFEST

    @property
    def parts_dir(self) -> Path:
        return self.output / PARTS

    @property
    def staging_dir(self) -> Path:
        return self.output / STAGING

    def pending(self) -> list[Unit]:
        return [unit for unit in self.units if unit.id not in self.done]

    def unit(self, unit_id: str) -> Unit:
        return self._by_id()[unit_id]

    def _by_id(self) -> dict[str, Unit]:
        return {unit.id: unit for unit in self.units}

    def mark_done(self, unit_ids: Iterable[str], part: str, counts: Mapping[str, Mapping[str, int]] | None = None):
        for unit_id in unit_ids:
            self.done[unit_id] = {"part": part, **dict((counts or {}).get(unit_id, {}))}
        self.save()

    def save(self) -> None:
        content = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "settings": self.settings,
            "units": [unit.to_dict() for unit in self.units],
            "done": self.done,
        }
        atomic_write_text(self.path, json.dumps(content, ensure_ascii=False, indent=1) + "\n")

    def reset_staging(self) -> None:
        """Work in progress from a killed run is never complete: drop it (its units are not marked done)."""
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def reconcile(self) -> None:
        """Units whose part file was renamed into place just before a crash (manifest not yet saved) count as
        done; a manifest entry whose part is gone does not."""
        changed = False
        for unit_id, record in list(self.done.items()):
            if not (self.output / record["part"]).exists():
                del self.done[unit_id]
                changed = True
        known = self._by_id()
        if self.parts_dir.is_dir():
            for entry in sorted(self.parts_dir.iterdir()):
                relative = f"{PARTS}/{entry.name}"
                if entry.is_file() and entry.suffix == ".parquet" and entry.stem in known:
                    if entry.stem not in self.done:
                        self.done[entry.stem] = {"part": relative}
                        changed = True
                elif entry.is_dir() and (entry / UNITS_FILE).is_file():
                    for unit_id in json.loads((entry / UNITS_FILE).read_text()):
                        if unit_id in known and unit_id not in self.done:
                            self.done[unit_id] = {"part": relative}
                            changed = True
        if changed:
            self.save()


def open_manifest(
    output: Path, settings: dict[str, Any], plan: Callable[[], list[Unit]], restart: bool = False
) -> Manifest:
    """The job's manifest: created (and the units planned) on the first run; on a rerun, read back and checked
    against ``settings``: a different model, revision or option is refused rather than mixed into the rows."""
    output = Path(output)
    key = fingerprint(settings)
    path = output / MANIFEST
    if path.exists() and not restart:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise JobError(f"cannot read the job manifest {path}: {error}; move it away to start over") from error
        if data.get("fingerprint") != key:
            changes = changed_settings(data.get("settings", {}), settings)
            raise JobError(
                f"{output} holds a job with other settings, so it cannot be resumed with these:\n  "
                + "\n  ".join(changes or ["(settings differ)"])
                + "\nRun with the original settings to resume, or give a new --output (or --restart to discard "
                "the rows already written)"
            )
        manifest = Manifest(output, key, settings, [Unit.from_dict(unit) for unit in data["units"]], data["done"])
    else:
        if output.exists() and any(output.iterdir()) and not path.exists():
            raise JobError(f"{output} is not empty and holds no job; give a new or empty folder for the result")
        if restart:
            shutil.rmtree(output / PARTS, ignore_errors=True)
        output.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(output, key, settings, plan())
        manifest.save()
    manifest.parts_dir.mkdir(exist_ok=True)
    # a run killed while writing leaves our hidden temp files (manifest, parts): never part of the result
    clean_stale_temp_files([output, manifest.parts_dir], (".json", ".parquet"), time.time())
    manifest.reconcile()
    return manifest


def part_files(output: Path) -> list[Path]:
    """The Parquet files of a job's result (Ray's per-block files included), in a stable order."""
    parts = Path(output) / PARTS
    if not parts.is_dir():
        raise JobError(f"{output} holds no captioning result (no {PARTS}/ folder); run `dataset caption` first")
    return sorted(
        path for path in parts.rglob("*.parquet") if not any(p.startswith((".", "_")) for p in path.parts[-2:])
    )


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); harmless where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
