"""A diverse sample of a captioning result as one self-contained HTML contact sheet (no server, no files beside).

Diversity: each image is a sparse vector of its tag scores (kept and near-threshold tags); farthest-point
sampling under cosine distance picks images unlike those already picked, so a sheet of 48 shows the range of
the dataset rather than 48 of its most common kind. Tags within the near margin of the threshold are marked:
those are the ones a threshold change would flip.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..captioning.atomic_write import atomic_write_text
from .exporters import read_result, result_settings
from .sources import image_bytes, parquet_columns, read_parquet_schema, split_member

MAX_CANDIDATES = 20_000  # farthest-point sampling is O(candidates × sample); a random subset beyond this


def diverse_sample(vectors: np.ndarray, count: int, seed: int = 0) -> list[int]:
    """Indices of ``count`` rows picked by farthest-point sampling (cosine distance), from a seeded start."""
    total = len(vectors)
    if total == 0 or count <= 0:
        return []
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    first = int(np.random.default_rng(seed).integers(total))
    picked = [first]
    distance = 1 - unit @ unit[first]
    for _ in range(min(count, total) - 1):
        distance[picked] = -1
        nxt = int(np.argmax(distance))
        picked.append(nxt)
        distance = np.minimum(distance, 1 - unit @ unit[nxt])
    return picked


def tag_vectors(rows: list[dict[str, Any]]) -> np.ndarray:
    vocabulary: dict[str, int] = {}
    for row in rows:
        for tag in list(row["tags"]) + list(row["near_tags"]):
            vocabulary.setdefault(tag, len(vocabulary))
    vectors = np.zeros((len(rows), max(1, len(vocabulary))), dtype=np.float32)
    for index, row in enumerate(rows):
        for tag, score in zip(list(row["tags"]) + list(row["near_tags"]),
                              list(row["scores"]) + list(row["near_scores"]), strict=True):
            vectors[index, vocabulary[tag]] = score
    return vectors


def write_review(result: Path, target: Path, count: int = 48, thumb: int = 160, seed: int = 0) -> int:
    result = Path(result)
    settings = result_settings(result)
    threshold = float(settings["options"]["threshold"])
    margin = float(settings.get("near_margin", 0.1))
    table = read_result(result, ["key", "source", "path", "unit", "tags", "scores", "near_tags", "near_scores",
                                 "caption", "error", "width", "height"])
    rows = [row for row in table.to_pylist() if not row["error"]]
    errors = table.num_rows - len(rows)
    if len(rows) > MAX_CANDIDATES:
        keep = np.random.default_rng(seed).choice(len(rows), MAX_CANDIDATES, replace=False)
        rows = [rows[index] for index in sorted(keep)]
    sample = [rows[index] for index in diverse_sample(tag_vectors(rows), count, seed)]
    images = load_images(sample, settings)
    cards = [_card(row, images.get(index), thumb, threshold, margin) for index, row in enumerate(sample)]
    page = _page(result, settings, cards, table.num_rows, errors, threshold, margin, thumb)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, page)
    return len(sample)


def load_images(rows: list[dict[str, Any]], settings: dict[str, Any]) -> dict[int, bytes]:
    """Image bytes of the sampled rows: from files, from their shard (one pass per shard) or Parquet file."""
    found: dict[int, bytes] = {}
    by_source: dict[str, dict[str, int]] = defaultdict(dict)
    for index, row in enumerate(rows):
        if row["path"]:
            with contextlib.suppress(OSError):
                found[index] = Path(row["path"]).read_bytes()
        else:
            by_source[row["source"]][row["key"]] = index
    members = tuple(settings["source"].get("image_members", ("jpg", "jpeg", "png", "webp")))
    for source, wanted in by_source.items():
        try:
            if source.endswith(".tar"):
                with tarfile.open(source, mode="r|*") as stream:
                    for info in stream:
                        key, suffix = split_member(info.name)
                        if key in wanted and suffix in members and wanted[key] not in found:
                            found[wanted[key]] = stream.extractfile(info).read()
            else:
                found.update(_parquet_images(Path(source), wanted, settings))
        except (OSError, tarfile.TarError, ValueError):
            continue  # a card without a picture beats no sheet
    return found


def _parquet_images(file: Path, wanted: dict[str, int], settings: dict[str, Any]) -> dict[int, bytes]:
    import pyarrow.parquet as pq

    from .job import SourceSpec

    source = settings["source"]
    spec = SourceSpec(paths=(str(file),), image_column=source.get("image_column"),
                      path_column=source.get("path_column"), key_column=source.get("key_column"))
    columns = parquet_columns(spec, None, read_parquet_schema(file), file)
    found: dict[int, bytes] = {}
    if columns.image is None or columns.key is None:
        return found
    for batch in pq.ParquetFile(file).iter_batches(columns=[columns.key, columns.image]):
        for row in batch.to_pylist():
            index = wanted.get(str(row[columns.key]))
            if index is not None:
                found[index] = image_bytes(row[columns.image]) or b""
    return found


def thumbnail(data: bytes | None, size: int) -> str:
    """A data: URI of a small JPEG, or "" when the image cannot be read."""
    if not data:
        return ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.thumbnail((size, size))
            rgb = image.convert("RGBA")
            flat = Image.new("RGB", rgb.size, (128, 128, 128))
            flat.paste(rgb, mask=rgb.getchannel("A"))
            buffer = io.BytesIO()
            flat.save(buffer, format="JPEG", quality=80)
    except Exception:  # any decoder error: show the card without a picture
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _card(row: dict[str, Any], data: bytes | None, thumb: int, threshold: float, margin: float) -> str:
    uri = thumbnail(data, thumb)
    picture = f'<img src="{uri}" alt="">' if uri else '<div class="missing">no preview</div>'
    tags = []
    for tag, score in zip(row["tags"], row["scores"], strict=True):
        near = " near" if score - threshold <= margin else ""
        tags.append(f'<li class="kept{near}">{html.escape(tag)} <b>{score:.2f}</b></li>')
    for tag, score in zip(row["near_tags"], row["near_scores"], strict=True):
        tags.append(f'<li class="below">{html.escape(tag)} <b>{score:.2f}</b></li>')
    size = f"{row['width']}×{row['height']}" if row["width"] else ""
    return (
        f'<figure>{picture}<figcaption><div class="key" title="{html.escape(row["source"] or "")}">'
        f'{html.escape(row["key"])} <span>{size}</span></div><ul>{"".join(tags)}</ul></figcaption></figure>'
    )


def _page(result, settings, cards, total, errors, threshold, margin, thumb) -> str:
    title = f"JTP review: {Path(result).name}"
    info = (f"{len(cards)} of {total} images ({errors} errors), model {settings['model']} "
            f"({settings['revision']}), threshold {threshold:g}; marked: within {margin:g} of it")
    style = f"""
body{{font:13px system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}}
h1{{font-size:18px;margin:0 0 4px}} p.info{{margin:0 0 12px;color:#555}}
.legend span{{padding:1px 6px;border-radius:3px;margin-right:8px}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax({thumb + 120}px,1fr));gap:10px}}
figure{{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;display:flex;gap:8px}}
figure img,.missing{{width:{thumb}px;height:{thumb}px;object-fit:contain;background:#eee;flex:none}}
.missing{{display:flex;align-items:center;justify-content:center;color:#999}}
figcaption{{min-width:0;flex:1}} .key{{font-weight:600;word-break:break-all;margin-bottom:4px}}
.key span{{font-weight:400;color:#888}} ul{{list-style:none;margin:0;padding:0;line-height:1.5}}
li b{{font-weight:400;color:#888;font-size:11px}} .near{{background:#fff3c4}} .below{{color:#aaa}}
"""
    legend = ('<p class="legend"><span class="kept">kept</span><span class="near">kept, near the threshold</span>'
              '<span class="below">below the threshold</span></p>')
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="info">{html.escape(info)}</p>{legend}<main>{"".join(cards)}</main>'
            f'<script type="application/json" id="settings">{html.escape(json.dumps(settings["options"], default=str))}'
            "</script></body></html>\n")
