"""Checking output locations before any work: a folder that cannot be written fails the run at once, not after
the model has run over every image (captions, sidecars, the JSON report, heatmap overlays and masks)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import JTPError
from .atomic_write import TEMP_SUFFIX, temp_prefix


class OutputError(JTPError):
    """An output location cannot be written; nothing was run."""


def unwritable_reason(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (or in the folders that would be made for it); else why not.

    An existing folder gets a real probe (a temp file of ours, created and removed: permissions, read-only
    mounts and ACLs all show); a missing one is checked at its nearest existing ancestor, and nothing is made.
    """
    folder = Path(folder)
    probe_in = folder
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        return f"{probe_in} is not a folder"
    try:
        descriptor, name = tempfile.mkstemp(prefix=temp_prefix(folder / "probe"), suffix=TEMP_SUFFIX, dir=probe_in)
    except OSError as error:
        return error.strerror or str(error)
    os.close(descriptor)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def check_output_folders(folders: Iterable[Path], what: str) -> None:
    """OutputError naming the first unwritable folders (each distinct folder is probed once)."""
    problems = []
    for folder in dict.fromkeys(Path(folder) for folder in folders):
        reason = unwritable_reason(folder)
        if reason is not None:
            problems.append(f"{folder} ({reason})")
            if len(problems) == 3:
                break
    if problems:
        raise OutputError(f"cannot write {what} in " + "; ".join(problems) + ". Nothing was run")


def check_output_files(paths: Iterable[Path | None], what: str) -> None:
    """Like check_output_folders for single files (e.g. --report, --mask): their folders must be writable, and
    the path itself must not be a folder."""
    for path in paths:
        if path is None:
            continue
        if Path(path).is_dir():
            raise OutputError(f"cannot write {what} {path}: it is a folder. Nothing was run")
        check_output_folders([Path(path).parent], f"{what} {Path(path).name}")
