"""The local engine (the default): one process, one device, decode threads ahead of the model.

All pending units stream through one ``stream_batches`` pipeline (no restart between units); a unit's rows are
written, as one Parquet file renamed into place, as soon as its last image is through the model, and only then
is it marked done in the manifest.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..captioning.atomic_write import atomic_replace
from ..errors import ImageError, JTPError
from ..families.base import ModelInput
from ..hub.files import ModelFiles, resolve_model
from ..hub.known_models import KNOWN_MODELS
from ..inference.streaming import should_pin, stream_batches
from ..tags.labels import Labels
from .job import PARTS, DatasetJob, JobError, Manifest, Unit, fsync_dir, job_settings, model_revision, open_manifest
from .records import Merger, RowBuilder, read_aliases, rows_to_table
from .sources import Sample, check_existing_fits, decode_image, iter_unit, plan_units


@dataclass
class RunSummary:
    engine: str
    output: Path
    images: int = 0  # rows written in this run (captioned + errors)
    errors: int = 0
    seconds: float = 0.0
    devices: int = 1
    units_done: int = 0  # in this run
    units_skipped: int = 0  # done by an earlier run
    units_total: int = 0
    interrupted: bool = False
    error_samples: list[tuple[str, str]] = field(default_factory=list)  # (key, reason), the first few

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_text(self) -> str:
        head = "Interrupted" if self.interrupted else "Done"
        lines = [
            f"{head} ({self.engine}): {self.images} images in {self.seconds:.1f} s, "
            f"{self.images_per_second:.2f} images/s, {self.images_per_second / max(1, self.devices):.2f} images/s "
            f"per device ({self.devices}), {self.errors} errors",
            f"  units: {self.units_done} done now, {self.units_skipped} done before, {self.units_total} in the job",
            f"  result: {self.output / PARTS} (Parquet; export with `python -m jtp_core dataset export`)",
        ]
        lines += [f"  error: {key}: {reason}" for key, reason in self.error_samples]
        return "\n".join(lines)


@dataclass
class PreparedJob:
    job: DatasetJob
    files: ModelFiles
    revision: str
    manifest: Manifest

    @property
    def model_name(self) -> str:
        return self.files.name


def start_run(job: DatasetJob, engine: str, restart: bool = False) -> tuple[PreparedJob, list[Unit], RunSummary]:
    """Open (or resume) the job, drop a killed run's unfinished work, and list what is left: both engines' start."""
    prepared = prepare_job(job, restart=restart)
    prepared.manifest.reset_staging()
    pending = prepared.manifest.pending()
    summary = RunSummary(engine, job.output, units_total=len(prepared.manifest.units))
    summary.units_skipped = len(prepared.manifest.units) - len(pending)
    return prepared, pending, summary


def prepare_job(job: DatasetJob, restart: bool = False) -> PreparedJob:
    """Resolve the model files (no load), fingerprint the job, open or create its manifest."""
    _require_pyarrow()
    files = resolve_model(job.model, models_dirs=job.models_dirs, download=job.download)
    spec = KNOWN_MODELS.get(files.name)
    revision = model_revision(files.weights, getattr(spec, "revision", None) if spec else None)
    settings = job_settings(job, files.name, revision)

    def plan():
        units = plan_units(job.source, job.merge)
        check_existing_fits(job.source, job.merge, {unit.kind for unit in units})
        return units

    manifest = open_manifest(job.output, settings, plan, restart=restart)
    return PreparedJob(job, files, revision, manifest)


def row_builder(job: DatasetJob, labels: Labels, model: str, revision: str) -> RowBuilder:
    merger = None
    if job.merge.enabled:
        if job.merge.drop_implied and job.options.tag_table is None:
            raise JobError("dropping implied tags needs a tag table (--tag-table) to know the implications")
        aliases = read_aliases(job.merge.aliases) if job.merge.aliases else {}
        merger = Merger(job.options, job.merge.drop_implied, aliases)
    return RowBuilder(labels, job.options, model, revision, job.near_margin, merger)


def run_local(
    job: DatasetJob,
    progress: bool = True,
    restart: bool = False,
    tagger=None,
    on_unit: Callable[[str], None] | None = None,
) -> RunSummary:
    """Caption every pending unit of the job on this machine; returns what was done. ``tagger``: an already
    loaded Tagger (tests, notebooks); ``on_unit``: called after each unit is committed."""
    prepared, pending, summary = start_run(job, "local", restart)
    manifest = prepared.manifest
    if not pending:
        return summary
    if tagger is None:
        from ..inference.tagger import load_tagger_from_files

        tagger = load_tagger_from_files(
            prepared.files, device=job.device, precision=job.precision, sequence_length=job.sequence_length
        )
    builder = row_builder(job, tagger.labels, prepared.model_name, prepared.revision)
    known = all(unit.kind in ("folder", "list") for unit in pending)
    bar = _progress_bar(sum(len(unit.inputs) for unit in pending) if known else None, not progress)
    started = time.perf_counter()
    try:
        _stream(job, tagger, builder, manifest, pending, summary, bar, on_unit)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        bar.close()
    return summary


def _stream(job, tagger, builder, manifest, pending, summary, bar, on_unit) -> None:
    batch_size = tagger.batch_size(job.batch_size)
    preprocessor = tagger.preprocessor

    def load(item: tuple[int, int, Sample]) -> ModelInput:
        sample = item[2]
        if sample.info.error:
            raise ImageError(sample.info.error)
        inputs, sample.info.width, sample.info.height = decode_image(
            sample.data, sample.file, preprocessor, job.fast_jpeg
        )
        sample.data = None  # decoded: the bytes need not wait in memory for the batch
        return inputs

    rows: dict[int, list[tuple[int, dict[str, Any]]]] = {index: [] for index in range(len(pending))}
    committed = 0

    def commit_through(last: int) -> None:
        nonlocal committed
        while committed <= last:
            unit = pending[committed]
            unit_rows = [row for _, row in sorted(rows.pop(committed), key=lambda pair: pair[0])]
            _commit(manifest, unit.id, unit_rows, summary)
            if on_unit is not None:
                on_unit(unit.id)
            committed += 1

    items = _items(pending, job)
    stream = stream_batches(items, load, batch_size, job.workers, pin_memory=should_pin(tagger.device))
    with closing(stream) as batches:
        for batch in batches:
            newest = -1
            for (unit_index, order, sample), reason in batch.failed:
                sample.info.error = reason
                rows[unit_index].append((order, builder.row(sample.info, None)))
                newest = max(newest, unit_index)
            if batch.inputs is not None:
                probs = tagger.predict(batch.inputs, batch_size=len(batch.items))
                for (unit_index, order, sample), row in zip(batch.items, probs, strict=True):
                    rows[unit_index].append((order, builder.row(sample.info, row)))
                    newest = max(newest, unit_index)
            bar.update(len(batch.items) + len(batch.failed))
            if newest > committed:
                commit_through(newest - 1)  # input order is kept: every earlier unit is complete
    commit_through(len(pending) - 1)


def _items(pending, job: DatasetJob) -> Iterator[tuple[int, int, Sample]]:
    for unit_index, unit in enumerate(pending):
        for order, sample in enumerate(iter_unit(unit, job.source, job.merge)):
            yield unit_index, order, sample


def _commit(manifest: Manifest, unit_id: str, rows: list[dict[str, Any]], summary: RunSummary) -> None:
    errors = sum(1 for row in rows if row["error"])
    target = manifest.parts_dir / f"{unit_id}.parquet"
    try:
        write_table_atomic(rows_to_table(rows), target)
    except OSError as error:
        done = len(manifest.done)
        hint = " (the disk is full)" if error.errno == errno.ENOSPC else ""
        raise JobError(
            f"could not write {target}: {error.strerror or error}{hint}. The {done} units done so far are kept in "
            f"{manifest.output}; fix this and run the same command again to resume"
        ) from error
    manifest.mark_done([unit_id], f"{PARTS}/{target.name}", {unit_id: {"rows": len(rows), "errors": errors}})
    summary.units_done += 1
    summary.images += len(rows)
    summary.errors += errors
    summary.error_samples += [(row["key"], row["error"]) for row in rows if row["error"]][
        : max(0, 20 - len(summary.error_samples))
    ]


def write_table_atomic(table, target: Path) -> None:
    """A Parquet file that appears complete or not at all: written beside, fsynced, renamed."""
    import pyarrow.parquet as pq

    with atomic_replace(target) as handle:
        pq.write_table(table, handle)
    fsync_dir(target.parent)


def _progress_bar(total: int | None, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="captioning", file=sys.stderr, disable=disable, smoothing=0.1)


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise JTPError(
            "dataset jobs write Parquet and need pyarrow: pip install pyarrow "
            "(or pip install 'jtp-tagger[ray]' for the Ray engine as well)"
        ) from None
