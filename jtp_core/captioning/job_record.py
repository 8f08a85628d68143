"""The record of a caption job, so that running the same command again resumes it in every mode.

Skip mode resumes by itself (a captioned image is skipped), but overwrite, append and prepend cannot tell an
image this job already did from one that had a caption before. So a job keeps a journal beside its output:
``<caption root>/.jtp-caption-job.jsonl`` (hidden, so no image lister or trainer picks it up).

- Line 1 is the header: the job's fingerprint (model identity, tag options, mode, extensions, inputs, output
  folder, …) and its digest. Lines after it each list the captions (relative to the root) finished by one batch.
- The header is written atomically when the job starts; each batch appends one line after its captions are
  written (one ``write`` of a few hundred bytes, no rewrite: 100k images make a journal of a few MB, and the
  cost per batch does not grow with it). It is flushed, not fsynced: after a power loss the last lines may be
  missing, and those images are simply done again, which is harmless: overwrite writes the same file, and
  append/prepend add only the tags a caption lacks (a second merge adds nothing).
- A kill in the middle of an append leaves a torn last line; reading ignores lines that are not valid JSON.
- Same fingerprint on the next run: the recorded images are left out ("resuming: 10 of 12 done, 2 left").
  A different fingerprint: a new job; the old record is replaced when the new job writes its first batch.
- A job that finishes (not interrupted) removes its record, so the same command later is a new job, as a
  user expects of "caption this folder again" (an overwrite really overwrites again). Images that failed
  (unreadable files) are not recorded as done, so a resumed job tries them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from .atomic_write import atomic_write_text

RECORD_NAME = ".jtp-caption-job.jsonl"
VERSION = 1


def model_identity(model: str | Path, precision: str = "auto", device: str = "auto") -> str:
    """The model part of a job's fingerprint, known before the model is loaded (or downloaded): the model as
    named (a folder or file as its absolute path), device and precision (int8 and half precision move scores)."""
    path = Path(model).expanduser()
    named = str(path.resolve()) if path.exists() else str(model)
    return f"{named} ({device}, {precision})"


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    text = json.dumps(fingerprint, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stable_value(value: Any) -> Any:
    """A JSON-able form of an option value that is the same in every run (no object addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [stable_value(item) for item in value]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(key): stable_value(item) for key, item in sorted(value.items(), key=lambda pair: str(pair[0]))}
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: stable_value(getattr(value, item.name)) for item in fields(value)}
    if hasattr(value, "source"):  # e.g. a TagTable: where it came from and how big it is
        size = len(value) if hasattr(value, "__len__") else None
        return {"type": type(value).__name__, "source": str(value.source), "size": size}
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


@dataclass
class JobRecord:
    """One caption job's journal at ``path``; ``done`` = captions (keys relative to the root) finished."""

    path: Path
    fingerprint: dict[str, Any]
    digest: str
    done: set[str] = field(default_factory=set)
    resumed: bool = False  # a record with this fingerprint was found: the job goes on
    replaced: bool = False  # a record with another fingerprint was found: a new job replaces it
    _started: bool = False

    @classmethod
    def open(cls, root: Path, fingerprint: dict[str, Any]) -> JobRecord:
        """Read the record in ``root`` if there is one; nothing is written yet."""
        record = cls(root / RECORD_NAME, fingerprint, fingerprint_digest(fingerprint))
        lines = _read_lines(record.path)
        if not lines:
            return record
        header = lines[0]
        if header.get("version") != VERSION or header.get("digest") != record.digest:
            record.replaced = True
            return record
        record.resumed = True
        record._started = True  # keep appending to it
        for line in lines[1:]:
            record.done.update(line.get("done", ()))
        return record

    @property
    def root(self) -> Path:
        return self.path.parent

    def key(self, caption: Path) -> str:
        try:
            return caption.relative_to(self.root).as_posix()
        except ValueError:
            return str(caption)

    def is_done(self, caption: Path) -> bool:
        return self.key(caption) in self.done

    def add(self, captions: list[Path]) -> None:
        """Record captions this job has finished: one appended line (the header first, on the first call)."""
        if not captions:
            return
        if not self._started:
            header = {"version": VERSION, "digest": self.digest, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "fingerprint": self.fingerprint}
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(header, ensure_ascii=False, default=str) + "\n", durable=False)
            self._started = True
        keys = [self.key(caption) for caption in captions]
        line = json.dumps({"done": keys}, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:  # one write: a kill tears at most this line
            handle.write(line)
        self.done.update(keys)

    def finish(self) -> None:
        """The job is complete: remove its record, so the same command later starts a new job.

        A record of another job (other options) that this one never wrote to is left alone.
        """
        if not self._started:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return []
    lines = []
    for raw in text.splitlines():
        try:
            item = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line torn by a kill
        if isinstance(item, dict):
            lines.append(item)
    return lines if lines and "digest" in lines[0] else []
