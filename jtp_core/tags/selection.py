"""Choosing tags the way the JTP-3 release and the Hydra package do (``Labels.rules`` "jtp3" / "hydra").

JTP-1 models keep the demo's rules in ``postprocess.select_tags``. For the Hydra family the steps are:

1. per-tag thresholds: calibrated from the model's validation data (``calibration``: a metric, a slider position,
   or "auto" = the model's own default) or the fixed ``threshold``; ``category_thresholds`` override either;
2. tags left out: ``exclude`` patterns, trigger words, ``exclude_categories`` (also ``rating`` and ``color``);
3. the implication mode of the model's own tool, with its order of operations (tags/implications.py);
4. ``category_max``, then ``max_tags`` (best first), then the order and the grouping asked for.

Everything derived from the labels alone (the implication graph, calibrated thresholds, masks) is computed once
per model and option value and kept on the Labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .calibration import (
    DEFAULT_METRIC,
    JTP3_DEFAULT_METRIC,
    Metric,
    read_val_csv,
    slider_metric,
    thresholds_from_val_csv,
    thresholds_from_validation,
)
from .implications import HYDRA_MODES, JTP3_MODES, ImplicationGraph, excluded_mask, select_hydra, select_jtp3
from .labels import Labels
from .tag_knowledge import group_by_category, limit_per_category
from .tag_table import UNKNOWN

if TYPE_CHECKING:
    from .postprocess import TagOptions

MODES = {"jtp3": JTP3_MODES, "hydra": HYDRA_MODES}
DEFAULT_MODE = "inherit"  # both tools' default once implications are known
CALIBRATION_OFF = ("off", "none", "")


def select_by_rules(probs: torch.Tensor, labels: Labels, options: TagOptions) -> list[tuple[str, float]]:
    """One image's probabilities [C] → (tag, score) pairs kept by the model's own tool's rules."""
    graph = implication_graph(labels, options)
    thresholds = tag_thresholds(labels, options)
    excluded = _excluded(labels, options)
    mode = implication_mode(options.implications, labels.rules)
    probs = probs.detach().float().cpu()
    if labels.rules == "jtp3":
        chosen = select_jtp3(probs, thresholds, graph, mode, excluded)
    else:
        chosen = select_hydra(probs, thresholds, graph, mode, excluded)
    selected = [(labels.tags[index], score) for index, score in chosen]
    category = category_lookup(labels, options)
    if options.category_max:
        selected = limit_per_category(selected, options.category_max, category)
    selected = selected[: options.max_tags or None]
    if options.order == "alphabetical":
        from .postprocess import format_tag  # deferred: postprocess imports this module

        selected.sort(key=lambda item: format_tag(item[0], options))
    if options.group_by_category:
        selected = group_by_category(selected, options.category_order, category)
    return selected


def implication_mode(requested: str, rules: str) -> str:
    """The mode to run: "auto" is the tool's default; a mode the tool does not offer is a ValueError."""
    modes = MODES[rules]
    mode = DEFAULT_MODE if requested == "auto" else requested
    if mode not in modes:
        raise ValueError(f"implications {requested!r} is not offered for this model; choose one of {', '.join(modes)}")
    return mode


def implication_graph(labels: Labels, options: TagOptions) -> ImplicationGraph:
    """From the model's own implications; a model without them borrows the tag table's, when one is given."""
    table = options.tag_table if labels.implications is None else None

    def build() -> ImplicationGraph:
        if labels.implications is not None:
            return ImplicationGraph.from_edges(labels.tags, labels.implications)
        edges = {tag: table.implied(tag) for tag in labels.tags} if table is not None else {}
        return ImplicationGraph.from_edges(labels.tags, edges)

    return labels.cached(("graph", id(table)), build)


def category_lookup(labels: Labels, options: TagOptions):
    """tag → category name: the model's own categories, else the tag table's, else "unknown"."""
    if labels.categories is not None:
        by_tag = labels.cached("categories", lambda: dict(zip(labels.tags, labels.categories, strict=True)))
        return lambda tag: by_tag.get(tag, UNKNOWN)
    if options.tag_table is not None:
        return options.tag_table.category
    return lambda tag: UNKNOWN


def calibration_metric(calibration: str | float | None, labels: Labels) -> Metric | None:
    """The metric behind ``TagOptions.calibration`` for this model; None = use the fixed threshold."""
    if calibration is None or (isinstance(calibration, str) and calibration.strip().lower() in CALIBRATION_OFF):
        return None
    has_data = labels.validation is not None or labels.validation_csv is not None
    if calibration == "auto":
        if labels.validation is not None:
            return Metric.parse(DEFAULT_METRIC)  # the Hydra package's default
        return Metric.parse(JTP3_DEFAULT_METRIC) if labels.validation_csv is not None else None
    if not has_data:
        raise ValueError(
            "calibrated thresholds need the model's validation data: HYDRA_3_5 carries it, JTP_3_HYDRA has it in "
            "jtp-3-hydra-val.csv beside the weights; this model has neither (use a fixed threshold)"
        )
    if isinstance(calibration, float | int):
        return slider_metric(float(calibration))
    return Metric.parse(calibration)


def calibrated_thresholds(labels: Labels, metric: Metric) -> torch.Tensor:
    """Per-tag thresholds [C] float64 (+inf: the tag never qualifies), computed once per model and metric."""

    def compute() -> torch.Tensor:
        if labels.validation is not None:
            return thresholds_from_validation(labels.validation, metric).double()
        return thresholds_from_val_csv(read_val_csv(labels.validation_csv), labels.tags, metric)

    return labels.cached(("calibrated", metric.spec), compute)


def tag_thresholds(labels: Labels, options: TagOptions) -> torch.Tensor:
    """The threshold of every tag [C] float64, category overrides applied; computed once per model and option
    values (every image of a run reuses it: read it, do not change it)."""
    metric = calibration_metric(options.calibration, labels)
    key = ("thresholds", metric.spec if metric else float(options.threshold), options.category_thresholds,
           id(options.tag_table))
    return labels.cached(key, lambda: _tag_thresholds(labels, options, metric))


def _tag_thresholds(labels: Labels, options: TagOptions, metric: Metric | None) -> torch.Tensor:
    if metric is None:
        thresholds = torch.full((len(labels.tags),), float(options.threshold), dtype=torch.float64)
    else:
        thresholds = calibrated_thresholds(labels, metric).clone()
    if options.category_thresholds:
        category = category_lookup(labels, options)
        for position, tag in enumerate(labels.tags):
            value = options.category_thresholds.get(category(tag))
            if value is not None:
                thresholds[position] = value
    return thresholds


def _excluded(labels: Labels, options: TagOptions) -> torch.Tensor:
    key = ("excluded", options.exclude, options.trigger_words, options.exclude_categories, id(options.tag_table))
    return labels.cached(key, lambda: _excluded_mask(labels, options))


def _excluded_mask(labels: Labels, options: TagOptions) -> torch.Tensor:
    from .postprocess import exclusion_matcher, normalize_tag  # deferred: postprocess imports this module

    matcher = exclusion_matcher(options.exclude)
    triggers = {normalize_tag(word) for word in options.trigger_words}
    named = [
        tag for tag in labels.tags
        if normalize_tag(tag) in triggers or (matcher is not None and matcher.fullmatch(normalize_tag(tag)))
    ]
    categories = labels.categories
    if categories is None and options.exclude_categories:
        category = category_lookup(labels, options)
        categories = [category(tag) for tag in labels.tags]
    return excluded_mask(labels.tags, categories, options.exclude_categories, named)

