"""JTP Tag Options node: e621 tag knowledge (implications, categories) for any node with a tag_options input."""

from __future__ import annotations

from typing import Any

from ..jtp_core import TagOptions
from ..jtp_core.hub.files import list_tag_tables
from ..jtp_core.hub.known_models import DEFAULT_TAG_TABLE
from ..jtp_core.tags.tag_knowledge import ALL_IMPLICATIONS, needs_tag_table, parse_category_values
from ..jtp_core.tags.tag_table import GROUP_ORDER, load_tag_table
from .comfy_host import model_dirs
from .inputs import CATEGORY, JTP_TAG_OPTIONS, tag_options_input


class JTPTagOptions:
    DESCRIPTION = (
        "e621 tag knowledge for JTP Tagger (and other JTP nodes with a tag_options input): drop or add implied "
        "tags, filter and limit by category, group the output by category."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = (JTP_TAG_OPTIONS,)
    RETURN_NAMES = ("tag_options",)
    OUTPUT_TOOLTIPS = ("Connect to a JTP node's tag_options input; these settings override its own.",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "tag_table": (list_tag_tables(model_dirs()), {
                    "default": DEFAULT_TAG_TABLE,
                    "tooltip": "Categories and implications of e621 tags: a CSV (tag,category,implications) in "
                               "models/jtp. jtp-3-hydra-tags.csv is downloaded from RedRocket/JTP-3 on first use.",
                }),
                "implications": (list(ALL_IMPLICATIONS), {
                    "default": "auto",
                    "tooltip": "auto: the model's own tool's default (JTP-1: off; JTP-3 / Hydra: inherit). JTP-1 "
                               "with the table: remove drops tags implied by a kept, more specific tag ('wolf' drops "
                               "'canine', 'mammal'); add completes the chains. JTP-3: inherit / constrain / remove / "
                               "constrain-remove / off, applied before the threshold as its release does. Hydra 3.5 "
                               "adds preserve and the enforce modes, as the Hydra package does.",
                }),
                "exclude_categories": ("STRING", {
                    "default": "",
                    "tooltip": "Categories to leave out, comma-separated: general, species, character, copyright, "
                               "meta, lore, unknown (tags the table does not know).",
                }),
                "category_thresholds": ("STRING", {
                    "default": "",
                    "tooltip": "Thresholds per category instead of the tagger's, e.g. 'species=0.5, general=0.3'.",
                }),
                "category_max": ("STRING", {
                    "default": "",
                    "tooltip": "At most this many tags of a category (the highest scoring), e.g. 'species=2, "
                               "meta=0'.",
                }),
                "group_by_category": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Write tags grouped by category, in e621's order: "
                               + ", ".join(GROUP_ORDER) + ". Within a group the tagger's order is kept.",
                }),
                "category_order": ("STRING", {
                    "default": "",
                    "tooltip": "With grouping: categories to put first, e.g. 'species, character'; the rest "
                               "follow in e621's order.",
                }),
            },
            "optional": {
                "tag_options": tag_options_input(),
            },
        }

    def build(
        self,
        tag_table: str,
        implications: str,
        exclude_categories: str,
        category_thresholds: str,
        category_max: str,
        group_by_category: bool,
        category_order: str,
        tag_options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any]]:
        overrides = dict(tag_options or {})
        overrides.update(
            implications=implications,
            exclude_categories=exclude_categories,
            category_thresholds=parse_category_values(category_thresholds, "category_thresholds", float),
            category_max=parse_category_values(category_max, "category_max", int),
            group_by_category=group_by_category,
            # the tooltip says "with grouping": text left in the box while grouping is off is ignored, not an error
            category_order=category_order if group_by_category else "",
        )
        if needs_tag_table(overrides):  # all off: no table read, nothing downloaded
            overrides["tag_table"] = load_tag_table(tag_table, model_dirs())
        TagOptions(**overrides)  # fail here, on this node, rather than later on the tagger
        return (overrides,)
