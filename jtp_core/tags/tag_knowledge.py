"""Applying a tag table to selected tags: implications, category filters and limits, grouped output.

``postprocess.select_tags`` drives this; with the options below at their defaults (tag table or not) every
step here is a no-op, so the output is exactly what it was without tag knowledge. The order of the steps:

0. candidates are the top ``max_tags`` of the model's ranking, as without tag knowledge;
1. each candidate must score above its category's threshold (``category_thresholds``, else ``threshold``)
   and not be of an excluded category (``exclude_categories``); tag exclusions and trigger words apply too;
2. implications: ``remove`` drops every tag implied by a kept, more specific one (``wolf`` keeps ``wolf`` and
   drops ``canine``, ``mammal``...); ``add`` completes the chains, each added tag scored as its best implier;
3. ``category_max``: at most N tags of a category (the highest scoring);
4. ``max_tags`` once more, so added tags never make the list longer than asked;
5. after the caller's ordering (score or alphabetical), ``group_by_category`` puts the categories in
   ``category_order`` (default ``GROUP_ORDER``, e621's sidebar order), keeping that ordering within each.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .implications import HYDRA_MODES, JTP3_MODES, SUBCATEGORIES
from .tag_table import CATEGORIES, GROUP_ORDER, tag_key

if TYPE_CHECKING:
    from .postprocess import TagOptions

IMPLICATIONS = ("off", "remove", "add")  # the modes of JTP-1 models, which need a tag table
# every mode a TagOptions may name; which ones apply depends on the model (tags/selection.py)
ALL_IMPLICATIONS: tuple[str, ...] = tuple(dict.fromkeys(("auto", *IMPLICATIONS, *JTP3_MODES, *HYDRA_MODES)))


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]
Selected = list[tuple[str, float]]


class CategoryMap(Mapping[str, Any]):
    """A read-only, hashable {category name: value}, so TagOptions stays a frozen, hashable value."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(sorted((values or {}).items()))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return repr(self._values)


def check_category(name: str, field: str, known: tuple[str, ...] = CATEGORIES) -> str:
    category = str(name).strip().lower()
    if category not in known:
        raise ValueError(f"{field}: unknown category {name!r}; known: {', '.join(known)}")
    return category


def _category_names(names: str | Sequence[str], field: str, known: tuple[str, ...] = CATEGORIES) -> tuple[str, ...]:
    """('species', 'Meta') or 'species, meta' → ('species', 'meta'), checked, without repeats."""
    if isinstance(names, str):
        names = [name for name in re.split(r"[,\n]", names) if name.strip()]
    return tuple(dict.fromkeys(check_category(name, field, known) for name in names))


def normalized_fields(options: TagOptions) -> dict[str, Any]:
    """The tag-knowledge fields of ``options`` checked and in canonical form; ValueError names a bad one."""
    if options.implications not in ALL_IMPLICATIONS:
        raise ValueError(
            f"implications must be one of {', '.join(ALL_IMPLICATIONS)}; got {options.implications!r}"
        )
    # the Hydra models also know the subcategories rating (safe/questionable/explicit) and color
    exclude = _category_names(options.exclude_categories, "exclude_categories", (*CATEGORIES, *SUBCATEGORIES))
    thresholds = {}
    for name, value in dict(options.category_thresholds).items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"category_thresholds: {name} must be between 0 and 1; got {value}")
        thresholds[check_category(name, "category_thresholds")] = float(value)
    limits = {}
    for name, value in dict(options.category_max).items():
        if int(value) != value or value < 0:
            raise ValueError(f"category_max: {name} must be a whole number, 0 or more; got {value}")
        limits[check_category(name, "category_max")] = int(value)
    order = _category_names(options.category_order, "category_order")
    if order and not options.group_by_category:
        raise ValueError("category_order is used only together with group_by_category")
    fields = {
        "exclude_categories": exclude,
        "category_thresholds": CategoryMap(thresholds),
        "category_max": CategoryMap(limits),
        "category_order": order,
    }
    return fields


def needs_tag_table(fields: Mapping[str, Any]) -> bool:
    """Whether TagOptions fields (as given, before checking) turn on anything that reads a tag table for a model
    that carries no categories or implications of its own (JTP-1)."""
    return fields.get("implications", "auto") in ("remove", "add") or any(
        fields.get(name) for name in ("exclude_categories", "category_thresholds", "category_max", "group_by_category")
    )


def check_table_for(options: TagOptions) -> None:
    """JTP-1 models know nothing of e621's categories and implications: the options that use them need a table."""
    wanted = [name for name, on in (
        ("implications", options.implications in ("remove", "add")),
        ("exclude_categories", bool(options.exclude_categories)),
        ("category_thresholds", bool(options.category_thresholds)),
        ("category_max", bool(options.category_max)),
        ("group_by_category", options.group_by_category),
    ) if on]
    if wanted and options.tag_table is None:
        raise ValueError(
            f"{', '.join(wanted)} need a tag table (tag_table=load_tag_table('jtp-3-hydra-tags.csv') or a CSV path)"
        )
    if options.implications not in ("auto", *IMPLICATIONS):
        raise ValueError(
            f"implications {options.implications!r} is a mode of the JTP-3 / Hydra models; JTP-1 models offer "
            f"{', '.join(IMPLICATIONS)}"
        )


def limit_per_category(selected: Selected, limits: Mapping[str, int], category_of: Callable[[str], str]) -> Selected:
    """At most ``limits[category]`` tags of each category, the first ones met (``selected`` is best first)."""
    counts: Counter[str] = Counter()
    kept = []
    for tag, score in selected:
        category = category_of(tag)
        if category in limits and counts[category] >= limits[category]:
            continue
        counts[category] += 1
        kept.append((tag, score))
    return kept


def group_by_category(selected: Selected, first: Sequence[str], category_of: Callable[[str], str]) -> Selected:
    """The categories in ``first``, then e621's sidebar order; the order within a category is kept."""
    order = tuple(first) + tuple(name for name in GROUP_ORDER if name not in first)
    rank = {name: index for index, name in enumerate(order)}
    return sorted(selected, key=lambda item: rank.get(category_of(item[0]), len(rank)))


def parse_category_values(text: str | Mapping[str, Any] | None, field: str, cast: Callable[[str], Any]) -> dict:
    """'species=0.5, meta: 0.3' (commas or new lines) → {'species': 0.5, 'meta': 0.3}; a dict passes through."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    values = {}
    for part in re.split(r"[,\n]", text):
        if not part.strip():
            continue
        match = re.fullmatch(r"\s*([^=:]+?)\s*[=:]\s*(\S+)\s*", part)
        if match is None:
            raise ValueError(f"{field}: expected category=value, got {part.strip()!r}")
        try:
            values[check_category(match[1], field)] = cast(match[2])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{field}: {part.strip()!r}: {error}") from error
    return values


class TagKnowledge:
    """The tag-knowledge steps for one TagOptions (see the module docstring for their order)."""

    def __init__(self, options: TagOptions) -> None:
        self.options = options
        self.table = options.tag_table
        # scores are float32: compare at that precision, so a score of 0.2 is not "above" a threshold of 0.2
        self.threshold = _float32(options.threshold)
        self.thresholds = {name: _float32(value) for name, value in options.category_thresholds.items()}
        self.excluded = set(options.exclude_categories)
        # the loop in select_tags may stop at the lowest threshold any tag can have
        self.floor = min([self.threshold, *self.thresholds.values()])

    def category(self, tag: str) -> str:
        return self.table.category(tag) if self.table is not None else "unknown"

    def admits(self, tag: str, score: float) -> bool:
        """Above its category's threshold and not of an excluded category."""
        if self.table is None:
            return score > self.threshold
        category = self.table.category(tag)
        return category not in self.excluded and score > self.thresholds.get(category, self.threshold)

    def refine(self, selected: Selected, allowed: Callable[[str], bool]) -> Selected:
        """Steps 2-4 on tags already admitted, by score descending; ``allowed`` = the caller's tag filters."""
        if self.table is None:
            return selected
        if self.options.implications == "remove":
            selected = self._remove_implied(selected)
        elif self.options.implications == "add":
            selected = self._add_implied(selected, allowed)
        if self.options.category_max:
            selected = self._limit_categories(selected)
        return selected[: self.options.max_tags or None]

    def grouped(self, selected: Selected) -> Selected:
        if not self.options.group_by_category:
            return selected
        return group_by_category(selected, self.options.category_order, self.category)

    def _remove_implied(self, selected: Selected) -> Selected:
        kept = {tag_key(tag) for tag, _ in selected}
        dropped = set()
        for tag, _ in selected:
            key = tag_key(tag)
            for implied in self.table.implied(tag):
                # a tag in a cycle with its implier is not less specific than it; both stay
                if implied in kept and key not in self.table.implied(implied):
                    dropped.add(implied)
        return [(tag, score) for tag, score in selected if tag_key(tag) not in dropped]

    def _add_implied(self, selected: Selected, allowed: Callable[[str], bool]) -> Selected:
        # ``selected`` is by score, so the first implier met is the best one: an implied tag takes its score
        # (a tag is at least as likely as any tag implying it) and its place, right after it, in chain order
        own = {tag_key(tag): (tag, score) for tag, score in selected}
        placed: dict[str, tuple[str, float]] = {}
        for tag, score in selected:
            placed.setdefault(tag_key(tag), (tag, score))
            for implied in self.table.implied(tag):
                if implied in placed:
                    continue  # already placed with a score at least this one
                if implied in own:
                    placed[implied] = (own[implied][0], score)  # scores below its implier's are raised
                elif self.admits(implied, score) and allowed(implied):
                    placed[implied] = (implied, score)
        return sorted(placed.values(), key=lambda item: -item[1])  # stable: ties keep implier, then its chain

    def _limit_categories(self, selected: Selected) -> Selected:
        return limit_per_category(selected, self.options.category_max, self.category)

