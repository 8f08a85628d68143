"""Caption whole folders for LoRA training: one caption file per image, resumable, never a half-written file.

    request = CaptionRequest(inputs=[Path("dataset")], recursive=True, options=TagOptions(trigger_words=("me",)))
    summary = caption_images(tagger, request, on_progress=lambda done, total: ...)
    print(summary.to_text())

Work is planned first (list the images, leave out those already captioned in skip mode, catch two images that
would share one caption file), then streamed: worker threads decode and preprocess while the model runs,
and each batch's captions are written atomically before the next batch's progress is reported.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..errors import JTPError
from ..families.base import ModelInput, Preprocessor
from ..inference.images import IMAGE_EXTENSIONS, iter_image_files
from ..inference.streaming import load_model_input, should_pin, stream_batches
from ..inference.tagger import Tagger
from ..tags.postprocess import TagOptions, format_words, select_tags
from .atomic_write import atomic_write_text
from .caption_files import (
    CaptionFileError,
    caption_path,
    caption_tag_key,
    check_mode,
    has_caption,
    normalize_extension,
    sidecar_path,
    split_caption,
    write_caption,
)

# Called after each batch with (images done, images to do); may raise to stop. What is done stays done.
ProgressCallback = Callable[[int, int], None]


@dataclass
class CaptionRequest:
    inputs: list[Path]  # folders and/or files
    recursive: bool = False
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    output_dir: Path | None = None  # None = caption beside each image; else mirror the input tree here
    mode: str = "skip"  # skip | overwrite | append | prepend
    options: TagOptions = TagOptions()
    caption_extension: str = ".txt"
    sidecar_floor: float | None = None  # write <stem>.jtp.json with every score above this floor when set
    report_path: Path | None = None  # JSON report of the run
    batch_size: int | None = None  # None = the device's default
    workers: int | None = None  # decode/preprocess threads; None = automatic, 0 = in the calling thread
    fast_jpeg: bool = False  # decode JPEGs in draft mode (much faster, scores move slightly): opt-in

    def __post_init__(self) -> None:
        if isinstance(self.inputs, (str, Path)):
            self.inputs = [self.inputs]
        self.inputs = [Path(path) for path in self.inputs]
        if not self.inputs:
            raise ValueError("give at least one folder or image file to caption")
        self.output_dir = Path(self.output_dir) if self.output_dir is not None else None
        self.report_path = Path(self.report_path) if self.report_path is not None else None
        if isinstance(self.extensions, str):  # ".png, .jpg" from a text field
            self.extensions = tuple(part for part in self.extensions.split(",") if part.strip())
        self.extensions = tuple(normalize_extension(ext).lower() for ext in self.extensions)
        self.caption_extension = normalize_extension(self.caption_extension)
        check_mode(self.mode)
        if self.caption_extension.lower() in self.extensions:
            raise ValueError(f"caption extension {self.caption_extension} is also an image extension")
        if self.sidecar_floor is not None and not 0 <= self.sidecar_floor < 1:
            raise ValueError("sidecar_floor must be in [0, 1)")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")


@dataclass
class CaptionSummary:
    tagged: int = 0  # images the model captioned (their files written, or merged with nothing new to add)
    skipped: int = 0  # images that already had a caption (skip mode)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (image, reason)
    seconds: float = 0.0
    interrupted: bool = False  # stopped before the end (cancel, Ctrl+C); what was written stays

    @property
    def images_per_second(self) -> float:
        return self.tagged / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tagged": self.tagged,
            "skipped": self.skipped,
            "failed": [{"path": str(path), "reason": reason} for path, reason in self.failed],
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "interrupted": self.interrupted,
        }

    def to_text(self, max_failures: int = 20) -> str:
        head = "Interrupted" if self.interrupted else "Done"
        speed = f" in {self.seconds:.1f} s ({self.images_per_second:.2f} images/s)" if self.tagged else ""
        lines = [
            f"{head}: {self.tagged} captioned, {self.skipped} skipped (already captioned), {len(self.failed)} failed"
            + speed
        ]
        lines += [f"  failed: {path}: {reason}" for path, reason in self.failed[:max_failures]]
        if len(self.failed) > max_failures:
            lines.append(f"  … and {len(self.failed) - max_failures} more failures (see the JSON report)")
        return "\n".join(lines)


@dataclass
class CaptionJob:
    image: Path
    caption: Path
    write_caption: bool = True  # False: caption kept (skip mode), only the sidecar is missing
    sidecar: Path | None = None


@dataclass
class CaptionPlan:
    jobs: list[CaptionJob]
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def plan_captions(request: CaptionRequest) -> CaptionPlan:
    """List the images and decide, without opening any, which need the model."""
    plan = CaptionPlan(jobs=[])
    owners: dict[Path, Path] = {}
    seen: set[Path] = set()
    for source in request.inputs:
        root = source if source.is_dir() else None
        for image in iter_image_files([source], recursive=request.recursive, extensions=request.extensions):
            if image.resolve() in seen:  # named twice by overlapping inputs ("ds ds/a.png"): caption it once
                continue
            seen.add(image.resolve())
            caption = caption_path(image, root, request.output_dir, request.caption_extension)
            owner = owners.setdefault(caption, image)
            if owner != image:
                plan.failed.append((image, f"its caption {caption.name} would be {owner.name}'s too; rename one"))
                continue
            job = _job(image, caption, request)
            if job is None:
                plan.skipped += 1
            else:
                plan.jobs.append(job)
    return plan


def caption_images(
    tagger: Tagger, request: CaptionRequest, on_progress: ProgressCallback | None = None
) -> CaptionSummary:
    """Caption every image of the request; bad files are reported in the summary and the run goes on."""
    return run_plan(tagger, request, plan_captions(request), on_progress)


def run_plan(
    tagger: Tagger | None, request: CaptionRequest, plan: CaptionPlan, on_progress: ProgressCallback | None = None
) -> CaptionSummary:
    """Carry out a plan. ``tagger`` may be None when the plan has no jobs (so a finished folder loads no model)."""
    if request.report_path is not None:
        prepare_report_folder(request.report_path)  # fail now, not after the whole run
    summary = CaptionSummary(skipped=plan.skipped, failed=list(plan.failed))
    started = time.perf_counter()
    try:
        if plan.jobs:
            if tagger is None:
                raise ValueError("a tagger is needed: some images have no caption yet")
            _stream(tagger, request, plan.jobs, summary, on_progress)
    except BaseException:
        summary.interrupted = True
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        if request.report_path is not None:
            write_report(request.report_path, summary)
    return summary


def _stream(
    tagger: Tagger,
    request: CaptionRequest,
    jobs: list[CaptionJob],
    summary: CaptionSummary,
    on_progress: ProgressCallback | None,
) -> None:
    batch_size = tagger.batch_size(request.batch_size)
    load = partial(_load_job, preprocessor=tagger.preprocessor, fast_jpeg=request.fast_jpeg)
    pin = should_pin(tagger.device)
    done = 0
    with closing(stream_batches(jobs, load, batch_size, request.workers, pin_memory=pin)) as batches:
        for batch in batches:
            summary.failed += [(job.image, reason) for job, reason in batch.failed]
            if batch.inputs is not None:
                probs = tagger.predict(batch.inputs, batch_size=len(batch.items))
                for job, row in zip(batch.items, probs, strict=True):
                    _finish(job, row, tagger, request, summary)
            done += len(batch.items) + len(batch.failed)
            if on_progress is not None:
                on_progress(done, len(jobs))


def write_report(path: Path, summary: CaptionSummary) -> None:
    try:
        prepare_report_folder(path)
        atomic_write_text(path, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")
    except OSError as error:
        raise JTPError(f"could not write the report {path}: {error.strerror or error}") from error


def prepare_report_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JTPError(f"cannot write the report in {path.parent}: {error.strerror or error}") from error


def sidecar_scores(probs: torch.Tensor, tags: list[str], floor: float) -> dict[str, float]:
    """Every tag scoring above ``floor`` (e621 spelling), highest first."""
    order = torch.argsort(probs, descending=True, stable=True).tolist()
    return {tags[index]: round(float(probs[index]), 4) for index in order if float(probs[index]) > floor}


def _job(image: Path, caption: Path, request: CaptionRequest) -> CaptionJob | None:
    sidecar = sidecar_path(caption) if request.sidecar_floor is not None else None
    if request.mode != "skip" or not has_caption(caption):
        return CaptionJob(image, caption, sidecar=sidecar)
    if sidecar is not None and not sidecar.exists():
        return CaptionJob(image, caption, write_caption=False, sidecar=sidecar)
    return None


def _load_job(job: CaptionJob, preprocessor: Preprocessor, fast_jpeg: bool = False) -> ModelInput:
    return load_model_input(job.image, preprocessor, fast_jpeg)


def _finish(job: CaptionJob, probs: torch.Tensor, tagger: Tagger, request: CaptionRequest, summary: CaptionSummary):
    options = request.options
    try:
        if job.write_caption:
            words = format_words(select_tags(probs, tagger.labels, options), options)
            write_caption(
                job.caption,
                options.separator.join(words),
                request.mode,
                tags=words,
                separator=options.separator,
                leading=len(options.trigger_words),
            )
        if job.sidecar is not None:
            _write_sidecar(job, probs, tagger, request.sidecar_floor)
    except (CaptionFileError, OSError) as error:
        summary.failed.append((job.image, _write_failure(error)))
        return
    summary.tagged += 1


def _write_sidecar(job: CaptionJob, probs: torch.Tensor, tagger: Tagger, floor: float) -> None:
    content = {
        "image": job.image.name,
        "model": tagger.name,
        "floor": floor,
        "scores": sidecar_scores(probs, tagger.tags, floor),
    }
    job.sidecar.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(job.sidecar, json.dumps(content, ensure_ascii=False, indent=1) + "\n")


def _write_failure(error: OSError | CaptionFileError) -> str:
    if isinstance(error, CaptionFileError):
        return str(error)
    where = f" ({error.filename})" if error.filename else ""
    return f"could not write the caption: {error.strerror or error}{where}"


def save_captions(
    captions: list[tuple[Path, str]],
    mode: str = "skip",
    output_dir: Path | None = None,
    caption_extension: str = ".txt",
    separator: str = ", ",
    trigger_words: Sequence[str] = (),
) -> CaptionSummary:
    """Write ready-made captions for image paths with the same modes and atomicity as ``caption_images``.

    With ``output_dir`` the images' tree is mirrored from their deepest common folder. ``trigger_words`` go
    first, also before an existing caption's text when merging, as in ``caption_images``.
    """
    check_mode(mode)
    extension = normalize_extension(caption_extension)
    images = [Path(image) for image, _ in captions]
    root = Path(os.path.commonpath([image.parent for image in images])) if output_dir and images else None
    summary = CaptionSummary()
    started = time.perf_counter()
    for image, (_, text) in zip(images, captions, strict=True):
        target = caption_path(image, root, Path(output_dir) if output_dir else None, extension)
        tags = _triggers_first(split_caption(text, separator), trigger_words) if trigger_words else None
        try:
            if tags is not None:
                text = separator.join(tags)
            outcome = write_caption(target, text, mode, tags=tags, separator=separator, leading=len(trigger_words))
        except (CaptionFileError, OSError) as error:
            summary.failed.append((image, _write_failure(error)))
            continue
        if outcome == "skipped":
            summary.skipped += 1
        else:
            summary.tagged += 1
    summary.seconds = time.perf_counter() - started
    return summary


def _triggers_first(tags: list[str], trigger_words: Sequence[str]) -> list[str]:
    triggers = {caption_tag_key(word) for word in trigger_words}
    return list(trigger_words) + [tag for tag in tags if caption_tag_key(tag) not in triggers]
