"""Reading a safetensors header (tensor shapes, dtypes, ``__metadata__``) without reading any tensor.

The format: a little-endian u64 header length N, then N bytes of JSON ``{name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}``, then the tensor payload; offsets are relative to the payload start. Parsing it
ourselves costs one small read and lets every problem be reported with the file's name, before anything is
allocated. Pickled checkpoints are never opened.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit; a larger length means a damaged or foreign file


@dataclass(frozen=True)
class CheckpointHeader:
    path: Path
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]  # safetensors spelling: BF16, F32, ...
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0


def read_header(path: Path | str) -> CheckpointHeader:
    """Shapes, dtypes and metadata of a .safetensors file; CheckpointError (naming the file) if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES:
        raise CheckpointError(f"{path}: only .safetensors weights are loaded (pickled files are never opened)")
    file_size = path.stat().st_size
    with path.open("rb") as stream:
        prefix = stream.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path} is not a safetensors file: only {file_size} bytes (truncated download?)")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER or 8 + length > file_size:
            raise CheckpointError(
                f"{path}: the header claims {length:,} bytes but the file has {file_size:,} "
                "(truncated download or not a safetensors file)"
            )
        raw = stream.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON (damaged file?): {error}") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object (damaged file?)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    shapes, dtypes = _tensor_table(path, header, payload=file_size - 8 - length)
    return CheckpointHeader(path=path, shapes=shapes, dtypes=dtypes, metadata=dict(metadata), file_size=file_size)


def _tensor_table(path: Path, header: dict, payload: int) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    end = 0
    for name, entry in header.items():
        try:
            shape = tuple(int(n) for n in entry["shape"])
            dtype = str(entry["dtype"])
            start, stop = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}: {error!r}") from error
        if not 0 <= start <= stop:
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data offsets {start}..{stop}")
        shapes[name], dtypes[name] = shape, dtype
        end = max(end, stop)
    if end > payload:
        raise CheckpointError(
            f"{path}: tensors need {end:,} bytes of data but the file holds {payload:,} after its header "
            "(truncated download?)"
        )
    return shapes, dtypes
