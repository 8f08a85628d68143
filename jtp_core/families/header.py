"""A safetensors file's header (tensor names, shapes, dtypes, ``__metadata__``) read without its tensors.

The header is a little-endian u64 length followed by that many bytes of JSON; every family decides from it
whether a file is one of its models, and checks the layout before a single weight is read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

WEIGHT_SUFFIXES = (".safetensors", ".sft")
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the header size


@dataclass(frozen=True)
class CheckpointHeader:
    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0


def read_header(path: str | Path) -> CheckpointHeader:
    """The header of a ``.safetensors`` file; CheckpointError naming the file when it is not a whole one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path}: only .safetensors weights are loaded (pickled files are never opened)")
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is not a safetensors file: {size} bytes, too short for a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(size - 8, _MAX_HEADER):
            raise CheckpointError(
                f"{path} is not a readable safetensors file: its header claims {length:,} bytes but the file has "
                f"{size:,} (truncated or damaged download?)"
            )
        raw = file.read(length)
    try:
        entries = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: its header is not JSON ({error})") from None
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file: its header is not a JSON object")
    metadata = entries.pop("__metadata__", None) or {}
    shapes, dtypes, end = {}, {}, 0
    for name, entry in entries.items():
        try:
            shapes[name] = tuple(int(n) for n in entry["shape"])
            dtypes[name] = str(entry["dtype"])
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(f"{path}: the header entry of tensor {name!r} is malformed") from None
    if 8 + length + end > size:
        raise CheckpointError(
            f"{path} is truncated or damaged: its tensors need {8 + length + end:,} bytes but the file has {size:,} "
            "(an interrupted download? delete it and download again)"
        )
    return CheckpointHeader(path=path, shapes=shapes, dtypes=dtypes, metadata=dict(metadata), file_size=size)
