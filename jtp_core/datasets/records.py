"""One row per image: what both engines write, built by the same code from the same probabilities.

Columns: ``key`` (the image's id: its path relative to the folder, the shard's sample key, the Parquet key),
``source`` (the folder, shard or Parquet file it came from), ``path`` (the image file, when there is one),
``unit``, ``model``, ``revision``, ``tags`` (e621 spelling, in caption order) with ``scores``, ``near_tags`` /
``near_scores`` (just below the threshold, for review), ``caption`` (the string a trainer reads, built with the
user's options; merged with the human caption when merging), ``existing`` (that human caption), ``added``
(what the model added to it), ``width``, ``height``, ``error`` (empty when the image was captioned).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..captioning.caption_files import caption_tag_key, split_caption
from ..tags.labels import Labels
from ..tags.postprocess import TagOptions, format_tag, format_words, select_tags
from ..tags.selection import tag_thresholds
from ..tags.tag_table import tag_key

STRING_COLUMNS = ("key", "source", "path", "unit", "model", "revision", "caption", "existing", "error")
COLUMNS = (
    "key", "source", "path", "unit", "model", "revision", "tags", "scores", "near_tags", "near_scores",
    "caption", "existing", "added", "width", "height", "error",
)


def arrow_schema():
    import pyarrow as pa

    types = {name: pa.string() for name in STRING_COLUMNS}
    types.update(
        tags=pa.list_(pa.string()), scores=pa.list_(pa.float32()), near_tags=pa.list_(pa.string()),
        near_scores=pa.list_(pa.float32()), added=pa.list_(pa.string()), width=pa.int32(), height=pa.int32(),
    )
    return pa.schema([(name, types[name]) for name in COLUMNS])


def rows_to_table(rows: Sequence[Mapping[str, Any]]):
    import pyarrow as pa

    return pa.Table.from_pylist([{name: row.get(name) for name in COLUMNS} for row in rows], schema=arrow_schema())


@dataclass
class SampleInfo:
    """What is known about an image before the model sees it."""

    key: str
    source: str
    unit: str
    path: str = ""
    width: int | None = None
    height: int | None = None
    existing: str | None = None  # the human caption (merge mode)
    error: str = ""


@dataclass
class Merger:
    """Keep the human tags; add the model's kept tags the caption lacks (spelling-, and with an alias table
    alias-insensitive); optionally drop those that a human or kept tag implies (e621 implications)."""

    options: TagOptions
    drop_implied: bool = False
    aliases: Mapping[str, str] = field(default_factory=dict)  # tag_key(antecedent) → tag_key(consequent)

    def key(self, tag: str) -> str:
        normalized = caption_tag_key(tag)
        canonical = self.aliases.get(tag_key(normalized))
        return caption_tag_key(canonical) if canonical else normalized

    def merge(self, existing: str, selected: Sequence[tuple[str, float]]) -> tuple[str, list[str]]:
        """(merged caption, the words added). Trigger words the caption lacks go first, as in caption_files."""
        options = self.options
        human = split_caption(existing.strip(), options.separator)
        present = {self.key(tag) for tag in human}
        implied: set[str] = set()
        table = options.tag_table
        if self.drop_implied and table is not None:
            for tag in human + [tag for tag, _ in selected]:
                implied.update(caption_tag_key(other) for other in table.implied(self.key(tag).replace(" ", "_")))
        front = [word for word in options.trigger_words if self.key(word) not in present]
        present.update(self.key(word) for word in front)
        added = []
        for tag, score in selected:
            key = self.key(tag)
            if key in present or key in implied:
                continue
            present.add(key)
            added.append(format_tag(tag, options, score))
        parts = [*front, existing.strip(), *added]
        return options.separator.join(part for part in parts if part), [*front, *added]


def read_aliases(path: str | Path) -> dict[str, str]:
    """e621's tag_aliases export (``antecedent_name,consequent_name[,status]``): active aliases only."""
    aliases: dict[str, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("status", "active") not in ("active", ""):
                continue
            antecedent, consequent = row.get("antecedent_name"), row.get("consequent_name")
            if antecedent and consequent:
                aliases[tag_key(antecedent)] = tag_key(consequent)
    return aliases


@dataclass
class RowBuilder:
    """Probabilities of one image → its row. Shared by the local engine and the Ray actors.

    ``labels``: the model's (``tagger.labels``), so each model's own rules choose the tags (JTP-3 / Hydra:
    calibrated thresholds and implication modes); a plain list of tag names means JTP-1's rules."""

    labels: Labels | Sequence[str]
    options: TagOptions
    model: str
    revision: str
    near_margin: float = 0.1
    merger: Merger | None = None

    def row(self, info: SampleInfo, probs: torch.Tensor | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "key": info.key, "source": info.source, "path": info.path, "unit": info.unit, "model": self.model,
            "revision": self.revision, "width": info.width, "height": info.height, "existing": info.existing,
            "error": info.error, "tags": [], "scores": [], "near_tags": [], "near_scores": [], "added": [],
            "caption": "",
        }
        if probs is None or info.error:
            row["error"] = info.error or "not captioned"
            return row
        labels = self.labels if isinstance(self.labels, Labels) else Labels(list(self.labels))
        selected = select_tags(probs, labels, self.options)
        row["tags"] = [tag for tag, _ in selected]
        row["scores"] = [round(score, 6) for _, score in selected]
        thresholds = tag_thresholds(labels, self.options)
        near = near_threshold(probs, labels.tags, thresholds, self.near_margin, set(row["tags"]))
        row["near_tags"] = [tag for tag, _ in near]
        row["near_scores"] = [round(score, 6) for _, score in near]
        if self.merger is not None and info.existing is not None and info.existing.strip():
            row["caption"], row["added"] = self.merger.merge(info.existing, selected)
        else:
            words = format_words(selected, self.options)
            row["caption"] = self.options.separator.join(words)
            row["added"] = words if self.merger is not None else []
        return row


def near_threshold(
    probs: torch.Tensor, tags: Sequence[str], thresholds: torch.Tensor | float, margin: float, kept: Iterable[str] = ()
) -> list[tuple[str, float]]:
    """Tags not kept that score within ``margin`` below their threshold (or just at it), highest first.
    ``thresholds``: one for all tags or one per tag (calibrated; +inf = never output, never near)."""
    if margin <= 0:
        return []
    probs = probs.detach().float().cpu()
    limits = torch.as_tensor(thresholds, dtype=torch.float64)
    close = (probs.double() > limits - margin) & (probs.double() <= limits + 1e-12) & torch.isfinite(limits)
    candidates = torch.nonzero(close).flatten().tolist()
    kept = set(kept)
    near = [(tags[index], float(probs[index])) for index in candidates if tags[index] not in kept]
    return sorted(near, key=lambda item: -item[1])
