"""From the canonical Parquet result to what trainers read.

- ``txt``: ``foo.txt`` beside ``foo.png`` (kohya, OneTrainer), with caption_files' modes (skip/overwrite/append/prepend)
- ``kohya``: the ``--in_json`` metadata file, ``{"<image key>": {"tags": "..."}}``. Only "tags" is written: kohya's
  fine-tuning dataset trains on ``caption + ", " + tags`` when both are there, so writing our caption into both
  would double it. An existing file is updated (its other entries and keys, e.g. a BLIP "caption", kept), as
  kohya's merge_dd_tags_to_metadata.py does. Key: the image's stem, or its full path with ``full_path``
  (kohya's --full_path; needed when stems repeat across folders).
- ``simpletuner``: a Parquet table (filename with extension, caption, tags, width, height) for SimpleTuner's
  parquet metadata/caption backend; the config block to use is returned.
- ``hf``: ``metadata.jsonl`` (``file_name``, ``text``, plus ``tags``) for 🤗 datasets' ``imagefolder``.
- ``webdataset``: each input shard copied to a new shard with ``KEY.<member>.txt`` (the caption) and
  ``KEY.<member>.json`` (tags, scores, model) added after each sample's own members; the input is never modified.

Every file is written atomically (temporary file + rename).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..captioning.atomic_write import atomic_replace, atomic_write_text
from ..captioning.caption_files import CaptionFileError, caption_path, normalize_extension, write_caption
from .job import MANIFEST, JobError, part_files
from .sources import split_member


def read_result(result: Path, columns: list[str] | None = None):
    """The whole result as one pyarrow Table, sorted by (source, key): a stable order whatever the engine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .records import arrow_schema

    files = part_files(result)
    schema = arrow_schema()
    tables = [pq.read_table(file, columns=columns, schema=schema) for file in files]
    if not tables:
        return schema.empty_table() if columns is None else pa.schema([schema.field(c) for c in columns]).empty_table()
    table = pa.concat_tables(tables)
    if "source" in table.column_names and "key" in table.column_names:
        table = table.sort_by([("source", "ascending"), ("key", "ascending")])
    return table


def result_settings(result: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(result) / MANIFEST).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError) as error:
        raise JobError(f"{result} has no readable job manifest ({error})") from error


def _captioned(result: Path, columns: list[str]) -> list[dict[str, Any]]:
    return [row for row in read_result(result, columns + ["error"]).to_pylist() if not row["error"]]


def export(result: Path, format: str, to: Path | None = None, **options) -> str:
    result = Path(result)
    if format == "txt":
        return export_txt(result, options.get("mode", "skip"), options.get("caption_extension", ".txt"))
    if format == "kohya":
        return export_kohya(result, to or result / "meta_jtp.json", options.get("full_path", False))
    if format == "simpletuner":
        return export_simpletuner(result, to or result / "simpletuner.parquet")
    if format == "hf":
        return export_hf(result, to)
    if format == "webdataset":
        return export_webdataset(result, to or result / "shards", options.get("member", "jtp"))
    raise ValueError(f"unknown export format {format!r}")


def export_txt(result: Path, mode: str = "skip", caption_extension: str = ".txt") -> str:
    separator = result_settings(result)["options"]["separator"]
    extension = normalize_extension(caption_extension)
    counts: dict[str, int] = defaultdict(int)
    failures: list[str] = []
    for row in _captioned(result, ["path", "caption"]):
        if not row["path"]:
            counts["no image file"] += 1
            continue
        target = caption_path(Path(row["path"]), extension=extension)
        try:
            counts[write_caption(target, row["caption"], mode, separator=separator)] += 1
        except (CaptionFileError, OSError) as error:
            failures.append(f"{target}: {error}")
    summary = ", ".join(f"{count} {what}" for what, count in sorted(counts.items())) or "nothing to write"
    return "\n".join([f"txt: {summary}; {len(failures)} failed", *failures[:20]])


def export_kohya(result: Path, to: Path, full_path: bool = False) -> str:
    to = Path(to)
    metadata: dict[str, Any] = {}
    if to.exists():
        try:
            metadata = json.loads(to.read_text(encoding="utf-8"))
        except ValueError as error:
            raise JobError(f"{to} exists but is not JSON ({error}); not overwriting it") from error
    owners: dict[str, str] = {}
    for row in _captioned(result, ["key", "path", "source", "caption"]):
        key = kohya_key(row, full_path)
        origin = row["path"] or f"{row['source']}:{row['key']}"
        if owners.setdefault(key, origin) != origin:
            raise JobError(
                f"two images share the kohya key {key!r} ({owners[key]} and {origin}); use --full-path "
                "(and kohya's --full_path)"
            )
        metadata.setdefault(key, {})["tags"] = row["caption"]
    to.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(to, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return f"kohya: {len(owners)} entries in {to} (train with --in_json {to})"


def kohya_key(row: dict[str, Any], full_path: bool) -> str:
    if row["path"]:
        return str(Path(row["path"])) if full_path else Path(row["path"]).stem
    return row["key"]


def export_simpletuner(result: Path, to: Path) -> str:
    import pyarrow as pa

    from .local_engine import write_table_atomic

    rows = _captioned(result, ["key", "caption", "tags", "width", "height"])
    table = pa.table({
        "filename": [row["key"] for row in rows],
        "caption": [row["caption"] for row in rows],
        "tags": [", ".join(row["tags"]) for row in rows],
        "width": pa.array([row["width"] for row in rows], pa.int32()),
        "height": pa.array([row["height"] for row in rows], pa.int32()),
    })
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    write_table_atomic(table, to)
    config = {
        "caption_strategy": "parquet", "metadata_backend": "parquet",
        "parquet": {"path": str(to), "filename_column": "filename", "caption_column": "caption",
                    "fallback_caption_column": "tags", "width_column": "width", "height_column": "height",
                    "identifier_includes_extension": True},
    }
    return f"simpletuner: {len(rows)} rows in {to}; dataset config:\n{json.dumps(config, indent=2)}"


def export_hf(result: Path, to: Path | None = None) -> str:
    """``metadata.jsonl`` in each image folder root (or in ``to``, which must contain the images)."""
    by_root: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    for row in _captioned(result, ["key", "path", "source", "caption", "tags"]):
        if not row["path"]:
            raise JobError("hf imagefolder export needs image files (folder or list sources); "
                           "for shards use --format webdataset")
        image = Path(row["path"])
        root = Path(to) if to is not None else Path(row["source"] or image.parent)
        try:
            name = image.relative_to(root).as_posix()
        except ValueError as error:
            raise JobError(f"{image} is not inside {root}; metadata.jsonl must sit above its images") from error
        by_root[root].append({"file_name": name, "text": row["caption"], "tags": row["tags"]})
    for root, entries in by_root.items():
        lines = "".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)
        atomic_write_text(root / "metadata.jsonl", lines)
    where = ", ".join(str(root / "metadata.jsonl") for root in by_root)
    return f"hf: {sum(map(len, by_root.values()))} entries in {where or 'nothing'}"


def export_webdataset(result: Path, to: Path, member: str = "jtp") -> str:
    to = Path(to)
    by_shard: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in read_result(result, ["key", "source", "unit", "caption", "tags", "scores", "model", "revision",
                                    "added", "error"]).to_pylist():
        by_shard[row["source"]][row["key"]] = row
    shards = [Path(source) for source in by_shard if source.endswith(".tar")]
    if not shards:
        raise JobError("no WebDataset shards in this result; the webdataset export copies shards it captioned")
    to.mkdir(parents=True, exist_ok=True)
    written = 0
    for shard in sorted(shards):
        target = to / shard.name
        if target.resolve() == shard.resolve():
            raise JobError(f"{target} is an input shard; export to another folder (inputs are never modified)")
        written += _rewrite_shard(shard, target, by_shard[str(shard)], member)
    return f"webdataset: {len(shards)} shards in {to}, {written} samples with {member}.txt/{member}.json added"


def _rewrite_shard(shard: Path, target: Path, rows: dict[str, dict[str, Any]], member: str) -> int:
    added = 0
    with atomic_replace(target) as handle, tarfile.open(fileobj=handle, mode="w") as out, \
            tarfile.open(shard, mode="r|*") as source:
        key = None
        for info in source:
            prefix, _ = split_member(info.name) if info.isreg() else (None, None)
            if prefix != key and key is not None:
                added += _add_members(out, key, rows.get(key), member)
            if prefix is not None:
                key = prefix
            data = source.extractfile(info).read() if info.isreg() else None
            out.addfile(info, io.BytesIO(data) if data is not None else None)
        if key is not None:
            added += _add_members(out, key, rows.get(key), member)
    return added


def _add_members(out: tarfile.TarFile, key: str, row: dict[str, Any] | None, member: str) -> int:
    if row is None or row["error"]:
        return 0
    record = {name: row[name] for name in ("caption", "tags", "scores", "model", "revision", "added")}
    for suffix, data in ((f"{member}.txt", row["caption"].encode()),
                         (f"{member}.json", json.dumps(record, ensure_ascii=False).encode())):
        info = tarfile.TarInfo(f"{key}.{suffix}")
        info.size = len(data)
        info.mode = 0o644
        out.addfile(info, io.BytesIO(data))
    return 1
