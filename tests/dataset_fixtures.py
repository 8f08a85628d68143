"""Small datasets in the formats trainers use, written with the stdlib/pyarrow directly (not the product)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    height, width = 24 + seed % 17, 30 + (seed * 7) % 23
    # a smooth gradient plus noise: different images get visibly different scores from the tiny model
    base = np.linspace(0, 255, width)[None, :, None] * rng.random(3)[None, None, :]
    pixels = np.clip(base + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_folder(folder: Path, count: int, sub: bool = True) -> list[Path]:
    paths = []
    for index in range(count):
        place = folder / ("sub" if sub and index % 3 == 0 else "") / f"img{index:03d}.png"
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(image_bytes(index))
        paths.append(place)
    return paths


def write_shard(path: Path, seeds: list[int], captions: dict[int, str] | None = None,
                corrupt: set[int] = frozenset()) -> list[str]:
    """A WebDataset shard: KEY.jpg (+ KEY.txt) per sample, members of a sample adjacent; returns the keys."""
    keys = []
    with tarfile.open(path, "w") as tar:
        for seed in seeds:
            key = f"{seed:06d}"
            keys.append(key)
            members = [("jpg", b"\xff\xd8 not a jpeg" if seed in corrupt else image_bytes(seed, "JPEG"))]
            if captions and seed in captions:
                members.append(("txt", captions[seed].encode()))
            for ext, data in members:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return keys


def write_parquet(path: Path, seeds: list[int], captions: dict[int, str] | None = None, with_key: bool = True) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"image": pa.array([image_bytes(seed, "JPEG") for seed in seeds], pa.binary())}
    if with_key:
        columns["key"] = pa.array([f"p{seed:05d}" for seed in seeds])
    if captions is not None:
        columns["human"] = pa.array([captions.get(seed) for seed in seeds], pa.string())
    pq.write_table(pa.table(columns), path, row_group_size=4)
