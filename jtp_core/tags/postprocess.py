"""From probabilities to a prompt string and a score table.

Defaults reproduce RedRocket's demo (top 250, score strictly above 0.2, by score, ", "-joined, underscores
as spaces) plus the parenthesis escaping Stable Diffusion front ends expect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..families.base import Labels
from .calibration import Metric
from .selection import calibration_metric, select_by_rules
from .tag_knowledge import TagKnowledge, check_table_for, normalized_fields
from .tag_table import TagTable

ORDERS = ("score", "alphabetical")


@dataclass(frozen=True)
class TagOptions:
    threshold: float = 0.2  # keep tags scoring above this (JTP-1: strictly above; Hydra family: at least)
    max_tags: int = 250  # at most this many predicted tags; 0 = no limit
    exclude: tuple[str, ...] = ()  # tags to drop; with or without underscores, * matches anything
    trigger_words: tuple[str, ...] = ()  # written first, as given (e.g. a LoRA's trigger)
    replace_underscores: bool = True
    escape_parentheses: bool = True
    weighted: bool = False  # "(tag:0.93)" instead of "tag"
    order: str = "score"
    separator: str = ", "
    # e621 tag knowledge (see tag_knowledge.py); all of it needs tag_table, and none of it changes the output
    # while left at these defaults
    tag_table: TagTable | None = None  # categories and implications, from tag_table.load_tag_table
    # "auto" = the model's own tool's default: off for JTP-1, inherit for JTP-3 / Hydra (tags/selection.py).
    # JTP-1 with a table: "remove" drops tags a kept, more specific tag implies; "add" completes chains.
    implications: str = "auto"
    exclude_categories: tuple[str, ...] = ()  # category names: general, species, character, meta, ...
    category_thresholds: Mapping[str, float] = field(default_factory=dict)  # name → threshold instead of `threshold`
    category_max: Mapping[str, int] = field(default_factory=dict)  # name → at most this many tags of it
    group_by_category: bool = False  # categories in category_order, then tag_table.GROUP_ORDER
    category_order: tuple[str, ...] = ()  # names to put first when grouping (e.g. ("species",))
    # per-tag calibrated thresholds instead of ``threshold``, for models with validation data (Hydra family):
    # "auto" = the model's default (Hydra 3.5: f1.0@0.1; JTP-3: cti), a metric ("f2.0@0.1", "csi", "j"…), or a
    # recall (0) ↔ precision (1) slider position; "off" or None = the fixed threshold. JTP-1 models have none.
    calibration: str | float | None = "auto"

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")
        if self.max_tags < 0:
            raise ValueError("max_tags must be 0 (no limit) or more")
        for name, value in normalized_fields(self).items():
            object.__setattr__(self, name, value)  # frozen: canonical, hashable forms set once here
        object.__setattr__(self, "calibration", check_calibration(self.calibration))


@dataclass
class TagResult:
    text: str  # the prompt string
    scores: dict[str, float] = field(default_factory=dict)  # kept tags (raw e621 names) → probability


def parse_tag_list(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """'a, b\\nc' or ['a', 'b'] → ('a', 'b', 'c'); blanks dropped."""
    if text is None:
        return ()
    parts = re.split(r"[,\n]", text) if isinstance(text, str) else list(text)
    return tuple(part.strip() for part in parts if part.strip())


def normalize_tag(tag: str) -> str:
    """Spelling-insensitive form for matching: lower case, no escapes, underscores as spaces."""
    return " ".join(tag.replace("\\", "").replace("_", " ").lower().split())


def exclusion_matcher(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    alternatives = (re.escape(normalize_tag(pattern)).replace(r"\*", ".*") for pattern in patterns)
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives))


def check_calibration(value: str | float | None) -> str | float | None:
    """A metric spec, "auto", "off"/None, or a slider position in [0, 1]; ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("calibration must be a metric, 'auto', 'off' or a slider position, not a boolean")
    if isinstance(value, int | float):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"calibration slider must be between 0 (recall) and 1 (precision); got {value}")
        return float(value)
    text = str(value).strip().lower()
    if text in ("auto", "off", "none", ""):
        return "off" if text in ("none", "") else text
    try:
        return check_calibration(float(text))  # "0.7" from a text field or the command line: a slider position
    except ValueError as error:
        if "slider" in str(error):
            raise
    return Metric.parse(text).spec  # raises with the grammar when it is not a metric


def select_tags(
    probs: torch.Tensor, tags: Sequence[str] | Labels, options: TagOptions
) -> list[tuple[str, float]]:
    """The tags kept for one image, best first, by the rules of the model's own tool (``Labels.rules``).

    JTP-1 (or a plain list of tags): tags strictly above the threshold among the top ``max_tags``, minus
    exclusions; with a tag table, the tag-knowledge options then apply (tag_knowledge.py). JTP-3 / Hydra: see
    tags/selection.py.
    """
    labels = tags if isinstance(tags, Labels) else Labels(list(tags))
    if labels.rules != "jtp1":
        return select_by_rules(probs, labels, options)
    check_table_for(options)
    calibration_metric(options.calibration, labels)  # JTP-1 has no validation data: a metric asked for is an error
    tags = labels.tags
    probs = probs.detach().float().cpu()
    order = torch.argsort(probs, descending=True, stable=True)
    excluded = exclusion_matcher(options.exclude)
    triggers = {normalize_tag(word) for word in options.trigger_words}

    def allowed(tag: str) -> bool:
        normalized = normalize_tag(tag)
        return not ((excluded and excluded.fullmatch(normalized)) or normalized in triggers)

    knowledge = TagKnowledge(options)
    selected: list[tuple[str, float]] = []
    for index in order[: options.max_tags or None].tolist():
        score = float(probs[index])
        if not score > knowledge.floor:
            break
        tag = tags[index]
        if knowledge.admits(tag, score) and allowed(tag):
            selected.append((tag, score))
    selected = knowledge.refine(selected, allowed)
    if options.order == "alphabetical":
        selected.sort(key=lambda item: format_tag(item[0], options))
    return knowledge.grouped(selected)


def format_tag(tag: str, options: TagOptions, score: float | None = None) -> str:
    text = tag.replace("_", " ") if options.replace_underscores else tag
    if options.escape_parentheses:
        text = text.replace("(", r"\(").replace(")", r"\)")
    if options.weighted and score is not None:
        text = f"({text}:{score:.2f})"
    return text


def format_words(selected: Sequence[tuple[str, float]], options: TagOptions) -> list[str]:
    """The words of the prompt: trigger words first, then each selected tag as written."""
    return list(options.trigger_words) + [format_tag(tag, options, score) for tag, score in selected]


def format_tags(selected: Sequence[tuple[str, float]], options: TagOptions) -> str:
    return options.separator.join(format_words(selected, options))


def tag_result(probs: torch.Tensor, tags: Sequence[str] | Labels, options: TagOptions | None = None) -> TagResult:
    """One image's probabilities → prompt string + score table."""
    options = options or TagOptions()
    selected = select_tags(probs, tags, options)
    return TagResult(text=format_tags(selected, options), scores={tag: round(score, 4) for tag, score in selected})


def tag_results(
    probs: torch.Tensor, tags: Sequence[str] | Labels, options: TagOptions | None = None
) -> list[TagResult]:
    return [tag_result(row, tags, options) for row in probs]
