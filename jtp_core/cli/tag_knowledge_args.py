"""Command-line flags for the tag-knowledge options, shared by every subcommand that formats tags."""

from __future__ import annotations

import argparse
from typing import Any

from ..hub.known_models import DEFAULT_TAG_TABLE
from ..tags.tag_knowledge import ALL_IMPLICATIONS, needs_tag_table, parse_category_values
from ..tags.tag_table import GROUP_ORDER


def add_tag_knowledge_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "e621 tag knowledge",
        "categories and implications from a tag table; the table is only read when one of these is used",
    )
    group.add_argument(
        "--tag-table", default=DEFAULT_TAG_TABLE,
        help="tag table CSV (tag,category,implications) or the name of one in the models dir; the default is "
             "downloaded there from RedRocket/JTP-3 on first use (default %(default)s)",
    )
    group.add_argument(
        "--implications", default="auto", choices=ALL_IMPLICATIONS, metavar="MODE",
        help="auto = the model's own tool's default (JTP-1: off; JTP-3 and Hydra: inherit). JTP-1 with a tag "
             "table: remove (drop tags implied by a kept, more specific tag: wolf drops canine, mammal) or add "
             "(complete the chains). JTP-3: inherit, constrain, remove, constrain-remove, off (applied before the "
             "threshold, as its release does). Hydra 3.5: preserve, inherit, constrain, enforce, enforce-inherit, "
             "enforce-constrain, enforce-remove, remove, constrain-remove, off (as the Hydra package does)",
    )
    group.add_argument(
        "--calibration", default="auto", metavar="METRIC|0..1|off",
        help="per-tag calibrated thresholds instead of --threshold, for models with validation data: auto = the "
             "model's default (Hydra 3.5: f1.0@0.1, JTP-3: cti); a metric such as f2.0@0.1, csi, cti, j; or a "
             "number from 0 (recall) to 1 (precision); off = use --threshold. JTP-1 models have no calibration data: "
             "auto and off both use --threshold",
    )
    group.add_argument("--exclude-categories", default="", help="comma-separated categories to drop, e.g. meta,species")
    group.add_argument(
        "--category-threshold", default="", metavar="CATEGORY=T,...",
        help="thresholds per category instead of --threshold, e.g. species=0.5,general=0.3",
    )
    group.add_argument(
        "--category-max", default="", metavar="CATEGORY=N,...", help="at most N tags per category, e.g. species=2"
    )
    # two options rather than one with an optional value, which would swallow an image path that follows it
    group.add_argument(
        "--group-by-category", action="store_true",
        help=f"write tags grouped by category, in the order {','.join(GROUP_ORDER)}",
    )
    group.add_argument(
        "--category-order", default="", metavar="CATEGORY,...",
        help="with grouping (implied by this option): these categories first, e.g. species,character",
    )


def tag_knowledge_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """TagOptions fields from the flags above, the tag table loaded only when some option needs it."""
    fields: dict[str, Any] = {
        "implications": args.implications,
        "calibration": args.calibration,
        "exclude_categories": args.exclude_categories,
        "category_thresholds": parse_category_values(args.category_threshold, "--category-threshold", float),
        "category_max": parse_category_values(args.category_max, "--category-max", int),
        "group_by_category": args.group_by_category or bool(args.category_order),
        "category_order": args.category_order,
    }
    if needs_tag_table(fields):
        from ..tags.tag_table import load_tag_table

        fields["tag_table"] = load_tag_table(
            args.tag_table, getattr(args, "models_dir", None), download=not getattr(args, "offline", False)
        )
    return fields

