"""Input definitions shared by the nodes, written once."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..jtp_core import TagOptions, parse_tag_list
from ..jtp_core.tags.postprocess import ORDERS

JTP_MODEL = "JTP_MODEL"
# A JTP_TAG_OPTIONS wire carries a dict of TagOptions fields that override the node's own widgets.
JTP_TAG_OPTIONS = "JTP_TAG_OPTIONS"
CATEGORY = "image/tagging"
_DEFAULTS = TagOptions()


def format_inputs() -> dict[str, tuple[str, dict[str, Any]]]:
    """Widgets for choosing and writing tags; the names are TagOptions' fields (see ``tag_options``)."""
    return {
        "threshold": ("FLOAT", {
            "default": _DEFAULTS.threshold, "min": 0.0, "max": 1.0, "step": 0.01,
            "tooltip": "Keep tags whose score is above this. 0.2 is RedRocket's recommended start; "
                       "raise it for fewer, surer tags.",
        }),
        "max_tags": ("INT", {
            "default": _DEFAULTS.max_tags, "min": 0, "max": 10000,
            "tooltip": "At most this many predicted tags (the highest scoring). 0 = no limit.",
        }),
        "exclude_tags": ("STRING", {
            "default": "", "multiline": True,
            "tooltip": "Tags to leave out, separated by commas or new lines. Spaces or underscores both match; "
                       "* is a wildcard (e.g. '*_background, hi res').",
        }),
        "trigger_words": ("STRING", {
            "default": "",
            "tooltip": "Words written first, as typed (e.g. a LoRA trigger). A predicted tag equal to one is "
                       "not repeated.",
        }),
        "replace_underscores": ("BOOLEAN", {
            "default": _DEFAULTS.replace_underscores,
            "tooltip": "Write 'blue eyes' instead of e621's 'blue_eyes'.",
        }),
        "escape_parentheses": ("BOOLEAN", {
            "default": _DEFAULTS.escape_parentheses,
            "tooltip": "Write 'membrane \\(anatomy\\)' so prompt weighting does not read the parentheses.",
        }),
        "weighted": ("BOOLEAN", {
            "default": _DEFAULTS.weighted,
            "tooltip": "Write each tag with its score as a prompt weight: '(blue eyes:0.93)'.",
        }),
        "order": (list(ORDERS), {
            "default": _DEFAULTS.order,
            "tooltip": "Highest score first, or alphabetical.",
        }),
        "separator": ("STRING", {
            "default": _DEFAULTS.separator,
            "tooltip": "Put between tags. Use ', ' for prompts; some trainers want ','.",
        }),
    }


def jtp_model_input() -> tuple[str, dict[str, Any]]:
    return (JTP_MODEL, {"tooltip": "From JTP Model Loader."})


def transparency_input(note: str = "") -> tuple[str, dict[str, Any]]:
    """The optional MASK that tagger and heatmap read as the image's transparency."""
    tooltip = "Transparency (LoadImage's MASK: 1 = transparent). Transparent parts are seen as gray, as in the "
    return ("MASK", {"tooltip": tooltip + "reference app." + (f" {note}" if note else "")})


def tag_options_input() -> tuple[str, dict[str, Any]]:
    return (JTP_TAG_OPTIONS, {"tooltip": "More tag options (from JTP Tag Options); they override this node's."})


def tag_options(overrides: dict[str, Any] | None = None, **widgets: Any) -> TagOptions:
    """TagOptions from the widgets of ``format_inputs`` (other keyword arguments ignored), then ``overrides``."""
    options = TagOptions(
        threshold=widgets["threshold"],
        max_tags=widgets["max_tags"],
        exclude=parse_tag_list(widgets["exclude_tags"]),
        trigger_words=parse_tag_list(widgets["trigger_words"]),
        replace_underscores=widgets["replace_underscores"],
        escape_parentheses=widgets["escape_parentheses"],
        weighted=widgets["weighted"],
        order=widgets["order"],
        separator=widgets["separator"],
        calibration=widgets.get("calibration", "auto"),
    )
    return dataclasses.replace(options, **overrides) if overrides else options


def calibration_input() -> tuple[str, dict[str, Any]]:
    """Optional (so saved workflows keep their widget order): calibrated per-tag thresholds for Hydra models."""
    return ("STRING", {
        "default": "auto",
        "tooltip": "JTP-3 / Hydra: per-tag thresholds calibrated on RedRocket's validation data instead of the "
                   "fixed threshold. auto = the model's default (Hydra 3.5: f1.0@0.1, JTP-3: cti); a number from 0 "
                   "(more tags, recall) to 1 (fewer, surer tags, precision); a metric such as f2.0@0.1, csi, j; "
                   "off = the threshold above. JTP-1 models have no calibration data: leave auto (or off) for them.",
    })


def batch_size_input() -> tuple[str, dict[str, Any]]:
    return ("INT", {
        "default": 0, "min": 0, "max": 512,
        "tooltip": "Images per forward pass. 0 = automatic for the device.",
    })
