"""Writing a file so that a crash or kill at any moment leaves it either as it was or complete.

The bytes go to a hidden temporary file in the same folder (so the rename never crosses file systems), are
flushed and fsynced, then ``os.replace`` swaps the file in: readers see the old file or the new one, never
a truncated one. fsync before the rename also covers power loss (on ext4/xfs/APFS the rename is only
committed after the data). A kill between creating and renaming the temporary file can leave a hidden
``.<name>.<random>.tmp`` behind; nothing reads those, and they are never mistaken for a caption.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from functools import cache
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically; the folder must exist. Keeps an existing file's permissions."""
    path = Path(path)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _copy_mode(path, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


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
