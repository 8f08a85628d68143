"""Writing a file so that a crash or kill at any moment leaves it either as it was or complete.

The bytes go to a hidden temporary file in the same folder (so the rename never crosses file systems), are
flushed and fsynced, then ``os.replace`` swaps the file in: readers see the old file or the new one, never
a truncated one. fsync before the rename also covers power loss (on ext4/xfs/APFS the rename is only
committed after the data). A kill between creating and renaming the temporary file can leave a hidden
``.<name>.jtp<pid>.<random>.tmp`` behind; nothing reads those, they are never mistaken for a caption, and
``clean_stale_temp_files`` removes them on the next run over that folder (the pid in the name tells whether
the process that made one is still running).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
# .<target name>.jtp<pid>.<8 random characters from tempfile>.tmp; older versions wrote no jtp<pid> part
_TEMP_NAME = re.compile(r"^\.(?P<name>.+?)\.(?:jtp(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp$")
STALE_MARGIN_S = 10.0  # a temp file lives for milliseconds; one this much older than the run start is stale
ABANDONED_S = 3600.0  # no write takes an hour: such a file is stale even if its pid is in use (pid reuse)


def temp_prefix(path: Path) -> str:
    return f".{path.name}.jtp{os.getpid()}."


@contextlib.contextmanager
def atomic_replace(path: str | Path, durable: bool = True) -> Iterator[BinaryIO]:
    """``with atomic_replace(path) as handle: write(handle)``: ``path`` is replaced by what was written when the
    block ends, or left as it was if it raises (or the process dies). The folder must exist. Keeps an existing
    file's permissions."""
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _copy_mode(path, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see ``atomic_replace``)."""
    with atomic_replace(path, durable) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode(encoding), durable=durable)


def _copy_mode(original: Path, temp_name: str) -> None:
    """mkstemp creates 0600 files; give the new file the old one's mode, or the usual umask-based one."""
    try:
        mode = stat.S_IMODE(os.stat(original).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    with contextlib.suppress(OSError):  # e.g. file systems without permissions (FAT on a USB stick)
        os.chmod(temp_name, mode)


@cache
def _umask() -> int:
    # reading the umask means setting it; do it once, not on every write while other threads create files
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def clean_stale_temp_files(folders: Iterable[Path], name_suffixes: Iterable[str], started: float) -> int:
    """Remove temp files of ours that a killed run left in ``folders``; returns how many.

    Only names of our pattern whose target ends with one of ``name_suffixes`` (e.g. ``.txt``, ``.jtp.json``),
    only files last modified more than STALE_MARGIN_S before ``started`` (a time.time() value), and never one
    whose writer (the pid in its name) is still running: another process's in-flight write is left alone.
    """
    suffixes = tuple(name_suffixes)
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match is None or not match.group("name").endswith(suffixes):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                modified = entry.stat().st_mtime
                if modified > started - STALE_MARGIN_S:
                    continue
                pid = match.group("pid")
                if pid is not None and modified > started - ABANDONED_S and _running(int(pid)):
                    continue
                os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows, os.kill(pid, 0) would send Ctrl+C
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True
