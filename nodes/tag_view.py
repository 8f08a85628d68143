"""What the tag view (web/js/jtp_tag_view.js) shows for one image: [tag, score, category] rows by score."""

from __future__ import annotations

from collections.abc import Mapping

from ..jtp_core import Tagger
from ..jtp_core.tags.tag_table import TagTable

UI_KEY = "jtp_tags"  # ui[UI_KEY] = one list of rows per image


def category_lookup(tagger: Tagger, tag_table: TagTable | None):
    """tag → category name or None: the tag table's when one is loaded, else the model's labels (None for PILOT,
    whose files carry no categories: the view then shows the chips without colour)."""
    if tag_table is not None:
        return tag_table.category
    categories = getattr(tagger.labels, "categories", None)
    if not categories:
        return lambda tag: None
    by_tag = dict(zip(tagger.tags, categories, strict=False))
    return by_tag.get


def tag_rows(scores: Mapping[str, float], category) -> list[list]:
    """Kept tags by score (descending) as [tag, score, category] rows, JSON-ready."""
    ordered = sorted(scores.items(), key=lambda item: -item[1])
    return [[tag, round(float(score), 4), category(tag)] for tag, score in ordered]
