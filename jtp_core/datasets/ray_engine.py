"""The Ray Data engine: the same job on a Ray cluster (or a local Ray instance), one model per actor.

Per wave of pending units (``wave_units`` at a time, one kind per wave)::

    read     Ray's readers: read_binary_files (folders, lists), read_webdataset (shards), read_parquet
    decode   CPU tasks: bytes → PIL → the family's preprocessor → the model input, packed as bytes
    tag      an actor pool (map_batches with a callable class): the model loaded once per actor, one GPU each
             when the cluster has GPUs; rows built by the same RowBuilder as the local engine
    write    ds.write_parquet into _staging/<wave>; then the folder is renamed into parts/ and its units are
             marked done, so a killed run loses at most the wave in flight and never leaves half of one

Ray schedules everything; this module only describes the dataset. Ray is imported when a run starts, never at
module load: the core works without it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, JTPError
from .job import PARTS, UNITS_FILE, DatasetJob, JobError, Unit, fsync_dir, parse_existing
from .local_engine import PreparedJob, RunSummary, row_builder, start_run
from .records import RowBuilder, SampleInfo, rows_to_table
from .sources import (
    folder_caption,
    image_bytes,
    member_caption,
    parquet_columns,
    read_parquet_schema,
    unit_key,
)

INSTALL_HINT = "pip install 'ray[data]>=2.9' pyarrow   (or: pip install 'jtp-tagger[ray]')"


def require_ray():
    """The ``ray`` module, or a JTPError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise JTPError(f"the Ray engine needs Ray Data, which is not installed ({error}): {INSTALL_HINT}") from None
    return ray


def connect(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` ("auto": the one ``ray start --head`` made on this machine), or start a
    local instance. The jtp_core package travels to the workers with the job (runtime_env py_modules)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    package = str(Path(__file__).resolve().parent.parent)
    kwargs: dict[str, Any] = {
        "include_dashboard": False, "log_to_driver": True, "runtime_env": {"py_modules": [package]},
    }
    if address:
        check_reachable(address)
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        ray.init(**kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise JobError(
            f"cannot connect to {where}: {error}. Start one with `ray start --head` (then --address auto), "
            "or leave out --address to run a local instance"
        ) from error


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes without a word; a TCP connect says so in seconds."""
    import socket

    if address == "auto":
        # Ray finds the head through the file `ray start` leaves; no file: ray.init fails fast by itself
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        try:
            address = current.read_text().strip().splitlines()[0]
        except (OSError, IndexError):
            return
    if "://" in address and not address.startswith("ray://"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise JobError(f"a Ray address is auto or HOST:PORT (ray://HOST:PORT for Ray Client); got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise JobError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error}). Is `ray start --head` running "
            "there, and is the port open? Leave out --address to run a local Ray instance instead"
        ) from error


@dataclass
class RayPlan:
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float
    batch_size: int


def plan_resources(workers: int | None, batch_size: int | None, cpus_per_worker: float | None) -> RayPlan:
    ray = require_ray()
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return RayPlan(workers or gpus, 1.0, cpus_per_worker or 1.0, batch_size or 64)
    return RayPlan(workers or 1, 0.0, cpus_per_worker or 1.0, batch_size or 16)


def run_ray(
    job: DatasetJob,
    address: str | None = None,
    num_cpus: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    wave_units: int = 16,
    progress: bool = True,
    restart: bool = False,
) -> RunSummary:
    """Caption every pending unit of ``job`` with Ray Data; same manifest, same rows as ``run_local``."""
    ray = require_ray()
    prepared, pending, summary = start_run(job, "ray", restart)
    if not pending:
        return summary
    check_ray_sources(prepared, pending)
    connect(address, num_cpus)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    started = time.perf_counter()
    plan = plan_resources(workers, job.batch_size, cpus_per_worker)
    summary.devices = plan.workers
    preprocessor = picklable_preprocessor(prepared)
    try:
        for number, wave in enumerate(_waves(pending, wave_units)):
            _run_wave(ray, prepared, plan, preprocessor, wave, number, summary)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - started
    return summary


def check_ray_sources(prepared: PreparedJob, pending: list[Unit]) -> None:
    spec = prepared.job.source
    for unit in pending:
        if unit.kind == "parquet":
            file = Path(unit.inputs[0])
            columns = parquet_columns(spec, prepared.job.merge, read_parquet_schema(file), file)
            if columns.key is None and columns.path is None:
                raise JobError(
                    f"{file} has no key column: Ray reads Parquet in parallel blocks and cannot number rows, so name "
                    "a unique id column with --key-column (or use the local engine, which numbers rows file:row)"
                )


def picklable_preprocessor(prepared: PreparedJob):
    """The family's preprocessor, to ship to the CPU decode tasks: built from the header alone, no weights read."""
    from ..families import family_of, read_header
    from ..families.base import ModelSettings

    header = read_header(prepared.files.weights)
    settings = ModelSettings(sequence_length=prepared.job.sequence_length)
    return family_of(header).preprocessor_for(header, dict(prepared.files.side_files), settings)


def _waves(pending: list[Unit], size: int):
    wave: list[Unit] = []
    for unit in pending:
        if wave and (len(wave) >= size or unit.kind != wave[0].kind):
            yield wave
            wave = []
        wave.append(unit)
    if wave:
        yield wave


def _run_wave(ray, prepared: PreparedJob, plan: RayPlan, preprocessor, wave: list[Unit], number: int, summary):
    job = prepared.job
    manifest = prepared.manifest
    decode_args = {"preprocessor": preprocessor, "fast_jpeg": job.fast_jpeg}
    datasets = [_read_unit(ray, unit, job).map_batches(
        decode_batch, batch_format="pyarrow", batch_size=32,
        fn_kwargs={**decode_args, "unit": unit, "context": _decode_context(unit, job)},
    ) for unit in wave]
    dataset = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    tagged = dataset.map_batches(
        TagActor,
        batch_format="pyarrow",
        batch_size=plan.batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.workers),
        num_gpus=plan.gpus_per_worker,
        num_cpus=plan.cpus_per_worker,
        fn_constructor_kwargs={
            "files": prepared.files, "job": job, "model": prepared.model_name, "revision": prepared.revision,
        },
    )
    name = f"wave-{wave[0].id}"
    staging = manifest.staging_dir / name
    try:
        tagged.write_parquet(str(staging))
        missing = _missing_rows(staging, wave, RowBuilder([], job.options, prepared.model_name, prepared.revision))
        if missing:
            from .local_engine import write_table_atomic

            write_table_atomic(rows_to_table(missing), staging / "missing.parquet")
        (staging / UNITS_FILE).write_text(json.dumps([unit.id for unit in wave]))
        fsync_dir(staging)
        target = manifest.parts_dir / name
        os.replace(staging, target)
        fsync_dir(manifest.parts_dir)
    except OSError as error:
        raise JobError(
            f"could not write the rows of {name}: {error.strerror or error}. The {len(manifest.done)} units done "
            f"so far are kept in {manifest.output}; fix this and run the same command again to resume"
        ) from error
    counts = _unit_counts(target)
    manifest.mark_done([unit.id for unit in wave], f"{PARTS}/{name}", counts)
    summary.units_done += len(wave)
    for count in counts.values():
        summary.images += count["rows"]
        summary.errors += count["errors"]


def _read_unit(ray, unit: Unit, job: DatasetJob):
    if unit.kind in ("folder", "list"):
        return ray.data.read_binary_files(list(unit.inputs), include_paths=True, ignore_missing_paths=True)
    if unit.kind == "webdataset":
        existing = parse_existing(job.merge.existing) if job.merge.enabled else None
        suffixes = list(job.source.image_members) + ([existing[1]] if existing else [])
        return ray.data.read_webdataset(unit.inputs[0], decoder=None, suffixes=suffixes)
    if unit.kind == "parquet":
        file = Path(unit.inputs[0])
        columns = parquet_columns(job.source, job.merge, read_parquet_schema(file), file)
        wanted = [name for name in dict.fromkeys((columns.image, columns.path, columns.key, columns.caption)) if name]
        return ray.data.read_parquet(str(file)).select_columns(wanted)
    raise JobError(f"unknown unit kind {unit.kind!r}")


def _decode_context(unit: Unit, job: DatasetJob) -> dict[str, Any]:
    context: dict[str, Any] = {"image_members": list(job.source.image_members)}
    if job.merge.enabled:
        context["existing"] = parse_existing(job.merge.existing)
    if unit.kind == "parquet":
        file = Path(unit.inputs[0])
        context["columns"] = parquet_columns(job.source, job.merge, read_parquet_schema(file), file)
    return context


def decode_batch(batch, preprocessor, fast_jpeg: bool, unit: Unit, context: dict[str, Any]):
    """A Ray CPU task: one block of raw records → rows with the packed model input (or the error)."""
    import pyarrow as pa

    from .sources import decode_image

    out: dict[str, list] = {name: [] for name in ("key", "source", "path", "unit", "existing", "width", "height",
                                                   "error", "input", "input_spec")}
    for record in batch.to_pylist():
        info, data, file = _record_info(record, unit, context)
        packed, spec = b"", ""
        if not info.error:
            try:
                inputs, info.width, info.height = decode_image(data, file, preprocessor, fast_jpeg)
                packed, spec = pack_input(inputs)
            except ImageError as error:
                info.error = str(error)
            except Exception as error:  # Pillow raises assorted errors on odd files: a row, never a failed job
                info.error = f"{type(error).__name__}: {error}"
        for name in ("key", "source", "path", "unit", "existing", "width", "height", "error"):
            out[name].append(getattr(info, name))
        out["input"].append(packed)
        out["input_spec"].append(spec)
    types = {"width": pa.int32(), "height": pa.int32(), "input": pa.binary()}
    return pa.table({name: pa.array(values, type=types.get(name, pa.string())) for name, values in out.items()})


def _record_info(record: dict[str, Any], unit: Unit, context: dict[str, Any]):
    existing = context.get("existing")
    if unit.kind in ("folder", "list"):
        path = str(record["path"])
        path = path if path.startswith("/") or os.path.isabs(path) else "/" + path
        info = SampleInfo(key=unit_key(unit, path), source=unit.root, unit=unit.id, path=path)
        if existing is not None:
            info.existing = folder_caption(Path(path))
        return info, record["bytes"], None
    if unit.kind == "webdataset":
        info = SampleInfo(key=str(record["__key__"]), source=unit.inputs[0], unit=unit.id)
        members = {name: value for name, value in record.items() if not name.startswith("__") and value is not None}
        data = next((members[ext] for ext in context["image_members"] if members.get(ext) is not None), None)
        if data is None:
            info.error = f"no image member ({', '.join(context['image_members'])}); it has {', '.join(members)}"
        if existing is not None:
            info.existing = member_caption(members, existing)
        return info, data, None
    columns = context["columns"]
    file = Path(unit.inputs[0])
    key = str(record[columns.key]) if columns.key else str(record[columns.path])
    info = SampleInfo(key=key, source=str(file), unit=unit.id)
    if columns.caption:
        value = record.get(columns.caption)
        info.existing = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    if columns.image:
        data = image_bytes(record.get(columns.image))
        if data is None:
            info.error = f"no image bytes in column {columns.image!r}"
        return info, data, None
    value = record.get(columns.path)
    if not value:
        info.error = f"empty path in column {columns.path!r}"
        return info, None, None
    image = Path(value) if Path(value).is_absolute() else file.parent / value
    info.path = str(image)
    return info, None, image


def pack_input(inputs: dict) -> tuple[bytes, str]:
    """A model input dict of CPU tensors → raw bytes + a JSON spec (key, dtype, shape); unpack_input undoes it."""
    arrays = [(key, value.numpy()) for key, value in inputs.items()]
    spec = json.dumps([[key, array.dtype.str, list(array.shape)] for key, array in arrays])
    return b"".join(np.ascontiguousarray(array).tobytes() for _, array in arrays), spec


def unpack_input(data: bytes, spec: str) -> dict:
    import torch

    out, offset = {}, 0
    for key, dtype, shape in json.loads(spec):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += count * dtype.itemsize
        out[key] = torch.from_numpy(array.copy())
    return out


class TagActor:
    """One per worker: loads the model once, then turns blocks of decoded rows into result rows."""

    def __init__(self, files, job: DatasetJob, model: str, revision: str) -> None:
        from ..inference.tagger import load_tagger_from_files

        self.tagger = load_tagger_from_files(
            files, device=job.device, precision=job.precision, sequence_length=job.sequence_length
        )
        self.batch_size = self.tagger.batch_size(job.batch_size)
        self.builder = row_builder(job, self.tagger.labels, model, revision)

    def __call__(self, batch):
        from ..families.base import stack_inputs

        records = batch.to_pylist()
        good = [index for index, record in enumerate(records) if not record["error"]]
        probs = None
        if good:
            inputs = stack_inputs([unpack_input(records[i]["input"], records[i]["input_spec"]) for i in good])
            probs = self.tagger.predict(inputs, batch_size=self.batch_size)
        position = {index: row for row, index in enumerate(good)}
        rows = []
        for index, record in enumerate(records):
            info = SampleInfo(**{name: record[name] for name in (
                "key", "source", "unit", "path", "width", "height", "existing", "error")})
            rows.append(self.builder.row(info, probs[position[index]] if index in position else None))
        return rows_to_table(rows)


def _missing_rows(staging: Path, wave: list[Unit], builder: RowBuilder) -> list[dict[str, Any]]:
    """Folder images Ray skipped (vanished between planning and reading) become error rows, never silent gaps."""
    files = [unit for unit in wave if unit.kind in ("folder", "list")]
    if not files:
        return []
    import pyarrow.dataset as pads

    seen = set(pads.dataset(str(staging), format="parquet").to_table(columns=["path"]).column("path").to_pylist())
    rows = []
    for unit in files:
        for image in unit.inputs:
            if image not in seen:
                info = SampleInfo(key=unit_key(unit, image), source=unit.root, unit=unit.id, path=image,
                                  error="cannot read file (it is missing or unreadable)")
                rows.append(builder.row(info, None))
    return rows


def _unit_counts(folder: Path) -> dict[str, dict[str, int]]:
    import pyarrow.dataset as pads

    table = pads.dataset(str(folder), format="parquet").to_table(columns=["unit", "error"])
    counts: dict[str, dict[str, int]] = {}
    for unit, error in zip(table.column("unit").to_pylist(), table.column("error").to_pylist(), strict=True):
        count = counts.setdefault(unit, {"rows": 0, "errors": 0})
        count["rows"] += 1
        count["errors"] += bool(error)
    return counts
