"""Inputs: folder trees, list files, WebDataset ``.tar`` shards and Parquet tables (image bytes or paths).

``plan_units`` turns a SourceSpec into units (see ``job``); ``iter_unit`` yields a unit's samples for the local
engine; ``decode_image`` turns one image's bytes into a model input, the same way in both engines. Nothing here
imports pyarrow until a Parquet file is read.
"""

from __future__ import annotations

import glob
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError
from ..families.base import ModelInput, Preprocessor
from ..inference.images import IMAGE_EXTENSIONS, iter_image_files
from .job import JobError, MergeSpec, SourceSpec, Unit, parse_existing
from .records import SampleInfo

IMAGE_COLUMNS = ("image", "jpg", "png", "webp", "img", "bytes", "image_bytes")
PATH_COLUMNS = ("path", "file_name", "filename", "image_path", "file")
_WDS_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # WebDataset: key = path up to the basename's first dot


@dataclass
class Sample:
    """One image for the local engine: its row info plus where its bytes are."""

    info: SampleInfo
    data: bytes | None = None  # image bytes (shards, Parquet bytes)
    file: Path | None = None  # or an image file


# --- planning ----------------------------------------------------------------------------------------------


def expand_paths(spec: SourceSpec) -> list[tuple[str, Path]]:
    """(kind, path) for every input; globs expanded (sorted); JobError for a path that does not exist."""
    found: list[tuple[str, Path]] = []
    for raw in spec.paths:
        matches = sorted(glob.glob(raw, recursive=True)) if glob.has_magic(raw) else [raw]
        if not matches:
            raise JobError(f"no file matches {raw}")
        for match in matches:
            path = Path(match)
            if not path.exists():
                raise JobError(f"no such file or folder: {path}")
            found.append((source_kind(path, spec.kind), path))
    return found


def source_kind(path: Path, kind: str = "auto") -> str:
    if kind != "auto":
        return kind
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".tar":
        return "webdataset"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in IMAGE_EXTENSIONS:
        return "folder"  # a single image: a folder unit of one
    return "list"


def plan_units(spec: SourceSpec, merge: MergeSpec | None = None) -> list[Unit]:
    """The units of the job, in a fixed order. Parquet schemas are checked here, before any work."""
    units: list[Unit] = []
    for kind, path in expand_paths(spec):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem if path.is_file() else path.name) or "input"
        prefix = f"{len(units):05d}-{stem}"
        if kind in ("folder", "list"):
            images = _list_images(path, kind, spec)
            root = str(path.resolve() if path.is_dir() else path.resolve().parent)
            for start in range(0, len(images), spec.unit_size):
                chunk = tuple(images[start : start + spec.unit_size])
                units.append(Unit(f"{prefix}-{start // spec.unit_size:05d}", kind, chunk, root))
        elif kind == "webdataset":
            units.append(Unit(prefix, kind, (str(path.resolve()),)))
        elif kind == "parquet":
            parquet_columns(spec, merge, read_parquet_schema(path), path)  # fail now, naming file and column
            units.append(Unit(prefix, kind, (str(path.resolve()),)))
        else:
            raise JobError(f"unknown source kind {kind!r} for {path}")
    if not units:
        raise JobError("no images found in " + ", ".join(spec.paths))
    return units


def _list_images(path: Path, kind: str, spec: SourceSpec) -> list[str]:
    if kind == "folder":
        return [str(image.resolve()) for image in iter_image_files([path], recursive=spec.recursive)]
    base = path.resolve().parent
    images = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        image = Path(line).expanduser()
        images.append(str(image if image.is_absolute() else base / image))
        if number > 50_000_000:
            raise JobError(f"{path}: more than 50 million lines; split the list")
    return images


def unit_key(unit: Unit, image: str) -> str:
    """A folder or list image's key: its path relative to the folder (or the list file's folder)."""
    path = Path(image)
    try:
        return path.relative_to(unit.root).as_posix() if unit.root else path.as_posix()
    except ValueError:
        return path.as_posix()


# --- Parquet ------------------------------------------------------------------------------------------------


def read_parquet_schema(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (OSError, ValueError) as error:  # ArrowInvalid is a ValueError
        raise JobError(f"{path} is not a readable Parquet file: {error}") from error


@dataclass(frozen=True)
class ParquetColumns:
    image: str | None
    path: str | None
    key: str | None
    caption: str | None


def parquet_columns(spec: SourceSpec, merge: MergeSpec | None, schema, path: Path) -> ParquetColumns:
    """Which columns hold the image (bytes or path), the key and the human caption; JobError naming the file and
    the missing column, with the columns it has."""
    names = list(schema.names)

    def need(column: str, what: str) -> str:
        if column not in names:
            raise JobError(f"{path} has no column {column!r} ({what}); its columns: {', '.join(names)}")
        return column

    image = need(spec.image_column, "image bytes") if spec.image_column else None
    file = need(spec.path_column, "image paths") if spec.path_column else None
    if image is None and file is None:
        image = next((name for name in IMAGE_COLUMNS if name in names), None)
        file = None if image else next((name for name in PATH_COLUMNS if name in names), None)
        if image is None and file is None:
            raise JobError(
                f"{path}: no image column found (looked for {', '.join(IMAGE_COLUMNS + PATH_COLUMNS)}); "
                f"name it with --image-column or --path-column. Its columns: {', '.join(names)}"
            )
    key = need(spec.key_column, "keys") if spec.key_column else ("key" if "key" in names else None)
    caption = None
    if merge is not None and merge.enabled:
        kind, name, _ = parse_existing(merge.existing)
        if kind != "column":
            raise JobError(f"{path}: existing captions of a Parquet table come from a column: use column:NAME")
        caption = need(name, "existing captions")
    return ParquetColumns(image, file, key, caption)


def image_bytes(value: Any) -> bytes | None:
    """A cell of an image column: bytes, or a struct with "bytes" (Hugging Face ``datasets`` Image feature)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def parquet_key(columns: ParquetColumns, row: dict[str, Any], file: Path, index: int) -> str:
    if columns.key and row.get(columns.key) is not None:
        return str(row[columns.key])
    if columns.path and row.get(columns.path):
        return str(row[columns.path])
    return f"{file.name}:{index}"


def _iter_parquet(unit: Unit, spec: SourceSpec, merge: MergeSpec) -> Iterator[Sample]:
    import pyarrow.parquet as pq

    file = Path(unit.inputs[0])
    columns = parquet_columns(spec, merge, read_parquet_schema(file), file)
    wanted = [name for name in dict.fromkeys((columns.image, columns.path, columns.key, columns.caption)) if name]
    index = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=256, columns=wanted):
        for row in batch.to_pylist():
            key = parquet_key(columns, row, file, index)
            index += 1
            info = SampleInfo(key=key, source=str(file), unit=unit.id)
            if columns.caption:
                info.existing = _caption_text(row.get(columns.caption))
            if columns.image:
                data = image_bytes(row.get(columns.image))
                if data is None:
                    info.error = f"no image bytes in column {columns.image!r}"
                yield Sample(info, data=data)
            else:
                value = row.get(columns.path)
                if not value:
                    info.error = f"empty path in column {columns.path!r}"
                    yield Sample(info)
                    continue
                image = Path(value) if Path(value).is_absolute() else file.parent / value
                info.path = str(image)
                yield Sample(info, file=image)


# --- WebDataset ----------------------------------------------------------------------------------------------


def split_member(name: str) -> tuple[str | None, str | None]:
    match = _WDS_KEY.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)


def _iter_shard(unit: Unit, spec: SourceSpec, merge: MergeSpec) -> Iterator[Sample]:
    shard = Path(unit.inputs[0])
    existing = parse_existing(merge.existing) if merge.enabled else None
    count = 0
    try:
        with tarfile.open(shard, mode="r|*") as stream:
            current: dict[str, bytes] = {}
            key = None
            for member in stream:
                if not member.isreg():
                    continue
                prefix, suffix = split_member(member.name)
                if prefix is None:
                    continue
                if prefix != key and key is not None:
                    count += 1
                    yield shard_sample(unit, shard, key, current, spec, existing)
                    current = {}
                key = prefix
                current[suffix.lower()] = stream.extractfile(member).read()
            if key is not None:
                count += 1
                yield shard_sample(unit, shard, key, current, spec, existing)
    except (tarfile.TarError, OSError, EOFError) as error:
        info = SampleInfo(key=f"{shard.name}#damaged", source=str(shard), unit=unit.id)
        info.error = f"the shard is damaged after {count} samples ({error}); the rest of it was not read"
        yield Sample(info)


def shard_sample(
    unit: Unit, shard: Path, key: str, members: dict[str, bytes], spec: SourceSpec, existing
) -> Sample:
    """One WebDataset sample (its members by extension) → a Sample; also used by the Ray engine's rows."""
    info = SampleInfo(key=key, source=str(shard), unit=unit.id)
    data = next((members[ext] for ext in spec.image_members if members.get(ext) is not None), None)
    if data is None:
        info.error = f"no image member ({', '.join(spec.image_members)}); it has {', '.join(sorted(members))}"
    if existing is not None:
        info.existing = member_caption(members, existing)
    return Sample(info, data=data)


def member_caption(members: dict[str, Any], existing: tuple[str, str, str | None]) -> str | None:
    _, member, json_field = existing
    raw = members.get(member)
    if raw is None:
        return None
    text = raw.decode("utf-8-sig", errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    if json_field is None:
        return text
    try:
        return _caption_text(json.loads(text).get(json_field))
    except (ValueError, AttributeError):
        return None


def _caption_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ", ".join(str(part) for part in value)
    return str(value)


# --- folders and lists ---------------------------------------------------------------------------------------


def folder_caption(image: Path, extension: str = ".txt") -> str | None:
    caption = image.with_suffix(extension)
    try:
        return caption.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError:
        return None


def _iter_files(unit: Unit, merge: MergeSpec) -> Iterator[Sample]:
    read_txt = merge.enabled and parse_existing(merge.existing)[0] == "txt"
    for image in unit.inputs:
        path = Path(image)
        info = SampleInfo(key=unit_key(unit, image), source=unit.root, unit=unit.id, path=image)
        if read_txt:
            info.existing = folder_caption(path)
        yield Sample(info, file=path)


def iter_unit(unit: Unit, spec: SourceSpec, merge: MergeSpec) -> Iterator[Sample]:
    if unit.kind in ("folder", "list"):
        return _iter_files(unit, merge)
    if unit.kind == "webdataset":
        return _iter_shard(unit, spec, merge)
    if unit.kind == "parquet":
        return _iter_parquet(unit, spec, merge)
    raise JobError(f"unknown unit kind {unit.kind!r}")


def check_existing_fits(spec: SourceSpec, merge: MergeSpec, kinds: set[str]) -> None:
    """Existing captions must come from where the sources keep them."""
    if not merge.enabled:
        return
    kind = parse_existing(merge.existing)[0]
    if kind == "txt" and kinds & {"parquet"}:
        raise JobError("existing captions of Parquet tables come from a column: use column:NAME")
    if kind == "column" and kinds - {"parquet"}:
        raise JobError("column:NAME reads existing captions from Parquet tables only")
    if kind == "member" and kinds - {"webdataset"}:
        raise JobError("member:EXT reads existing captions from WebDataset shards only")


# --- decoding ------------------------------------------------------------------------------------------------


def decode_image(
    data: bytes | None, file: Path | None, preprocessor: Preprocessor, fast_jpeg: bool = False
) -> tuple[ModelInput, int, int]:
    """Image bytes (or a file) → (model input, width, height); ImageError with a short reason when unreadable."""
    if data is None and file is not None:
        if fast_jpeg:
            with _opened(file) as image:
                width, height = image.size
            return preprocessor.from_file(file, fast_jpeg=True), width, height
        try:
            data = file.read_bytes()
        except OSError as error:
            raise ImageError(f"cannot read file ({error.strerror or error})") from error
    if not data:
        raise ImageError("empty file (0 bytes)")
    with _opened(io.BytesIO(data)) as image:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as error:
            raise ImageError(f"not a readable image ({error})") from error
        return preprocessor.from_pil(image), image.width, image.height


def _opened(source):
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown or damaged format)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"not a readable image ({error})") from error
