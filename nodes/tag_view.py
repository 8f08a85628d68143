"""What the tag view (web/js/jtp_tag_view.js) shows for one image: [tag, score, category] rows by score."""

from __future__ import annotations

from collections.abc import Mapping

from ..jtp_core import Tagger
from ..jtp_core.tags.tag_table import TagTable

UI_KEY = "jtp_tags"  # ui[UI_KEY] = one list of rows per image


def category_lookup(tagger: Tagger, tag_table: TagTable | None):
    """tag → category name or None: the model's own categories (JTP-3 / Hydra), else the tag table's when one is
    loaded, else None (PILOT without a table: the view shows the chips without colour). The same order as the
    tag selection's, so a chip's colour is the category that exclude_categories and grouping went by."""
    categories = getattr(tagger.labels, "categories", None)
    if categories:
        by_tag = dict(zip(tagger.tags, categories, strict=False))
        return by_tag.get
    if tag_table is not None:
        return tag_table.category
    return lambda tag: None


def tag_rows(scores: Mapping[str, float], category) -> list[list]:
    """Kept tags by score (descending) as [tag, score, category] rows, JSON-ready."""
    ordered = sorted(scores.items(), key=lambda item: -item[1])
    return [[tag, round(float(score), 4), category(tag)] for tag, score in ordered]
