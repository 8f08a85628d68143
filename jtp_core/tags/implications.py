"""Tag implications (``wolf`` → ``canine`` → ``mammal``) applied the way RedRocket's two releases do.

For a tag t, A(t) are the tags that imply it, directly or through others (its antecedents: for ``mammal``,
``wolf`` and ``canine``) and D(t) the tags it implies (its consequents). All functions here work on one image's
probabilities [C] and tag indices; a decision is always ``p >= threshold``.

**JTP-3 release** (``select_jtp3``; ``inference.py``): the mode changes probabilities *before* the threshold.
  inherit: p(t) ← max(p(t), p over A(t)); constrain: p(t) ← min(p(t), p over D(t)); then threshold, with excluded
  categories dropped at that step; remove / constrain-remove then drop D(s) for every survivor s.

**Hydra package** (``select_hydra``; ``classification.py``): the decision comes first and the rewrite only changes
  the reported scores. Order: (1) selection — *qualify* keeps Q ∪ D(Q), Q = {p >= θ}; *enforce* drops each
  failing tag with all of A(t); *threshold* keeps p >= θ — (2) exclusive groups, (3) excluded tags, categories and
  subcategories, (4) score rewrite over the kept set K (inherit: max over A(t)∩K, constrain: min over D(t)∩K),
  (5) removal of D(s) for s in K, (6) sort by (−score, name).

Implications whose target is not one of the model's tags are ignored (also as a step in a chain). A cycle in
the data cannot loop; its members imply one another, share scores under inherit/constrain, and — our decision,
the releases would recurse forever — never remove one another (neither is more specific).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .modes import HYDRA_MODES, JTP3_MODES, SUBCATEGORIES

# e621's categories by number, and the Hydra package's two derived subcategories (``hydra/label.py``)
E621_CATEGORIES = ("general", "artist", "contributor", "copyright", "character", "species", "invalid", "meta", "lore")
RATINGS = ("safe", "questionable", "explicit")
COLOR_PREFIXES = (
    "black_", "blue_", "brown_", "green_", "grey_", "orange_", "pink_", "purple_", "red_", "tan_", "teal_",
    "white_", "yellow_",
    "dark_", "darkened_", "light_", "blonde_",
    "monotone_", "two_tone_", "countershad", "reverse_countershad", "multicolored_",
    "camo_", "cosmic_", "mottled_", "plaid_", "pride_color_", "rainbow_",
)
COLOR_EXCEPTIONS = (
    "_background", "_border", "_outline",
    "_bars", "_flag",
    "dark_room", "light_beam", "light_bulb", "rainbow_symbol", "tan_line",
)

Selected = list[tuple[int, float]]  # (tag index, score), best first


class ImplicationGraph:
    """Transitive implications between a model's tags, by index.

    ``antecedent[k]`` implies ``consequent[k]`` for every pair k (all transitive pairs, never a tag with itself);
    ``mutual[k]`` marks pairs whose reverse exists too (a cycle).
    """

    def __init__(self, tags: Sequence[str], pairs: Iterable[tuple[int, int]]) -> None:
        self.tags = tuple(tags)
        self.index = {tag: position for position, tag in enumerate(self.tags)}
        pairs = sorted(set(pairs))
        known = set(pairs)
        self.antecedent = torch.tensor([a for a, _ in pairs], dtype=torch.long)
        self.consequent = torch.tensor([c for _, c in pairs], dtype=torch.long)
        self.mutual = torch.tensor([(c, a) in known for a, c in pairs], dtype=torch.bool)
        self._down: list[list[int]] = [[] for _ in self.tags]
        self._up: list[list[int]] = [[] for _ in self.tags]
        for a, c in pairs:
            self._down[a].append(c)
            self._up[c].append(a)

    @classmethod
    def from_edges(cls, tags: Sequence[str], direct: Mapping[str, Iterable[str]]) -> ImplicationGraph:
        """Tags in output order and their direct implications by name → the transitive graph.

        Sources or targets that are not in ``tags`` are ignored (a chain does not pass through them).
        """
        index = {tag: position for position, tag in enumerate(tags)}
        edges: list[list[int]] = [[] for _ in tags]
        for source, targets in direct.items():
            if source in index:
                edges[index[source]].extend(index[target] for target in targets if target in index)
        return cls(tags, ((start, end) for start in range(len(tags)) for end in _reachable(start, edges)))

    def __len__(self) -> int:
        return len(self.tags)

    def __repr__(self) -> str:
        return f"ImplicationGraph({len(self.tags)} tags, {len(self.antecedent)} transitive pairs)"

    def consequents(self, tag: int) -> tuple[int, ...]:
        """D(tag): every tag it implies, directly or not (sorted by index)."""
        return tuple(self._down[tag])

    def antecedents(self, tag: int) -> tuple[int, ...]:
        """A(tag): every tag that implies it, directly or not (sorted by index)."""
        return tuple(self._up[tag])

    def implied_by(self, tags: Tensor, *, strict: bool = False) -> Tensor:
        """Mask of D(tags) for a bool mask [C]; ``strict`` leaves out tags in a cycle with the implier."""
        pairs = tags.index_select(0, self.antecedent)  # index_select: bool fancy indexing is ~100x slower
        if strict:
            pairs &= ~self.mutual
        return _mark(len(self), self.consequent.masked_select(pairs))

    def implying(self, tags: Tensor) -> Tensor:
        """Mask of A(tags) for a bool mask [C]."""
        return _mark(len(self), self.antecedent.masked_select(tags.index_select(0, self.consequent)))

    def inherit(self, scores: Tensor, kept: Tensor | None = None) -> Tensor:
        """s(t) = max(p(t), p over A(t)) — over pairs inside ``kept`` only when given."""
        targets, sources = self._pairs_within(kept, self.consequent, self.antecedent)
        return scores.scatter_reduce(0, targets, scores.index_select(0, sources), reduce="amax")

    def constrain(self, scores: Tensor, kept: Tensor | None = None) -> Tensor:
        """s(t) = min(p(t), p over D(t)) — over pairs inside ``kept`` only when given."""
        targets, sources = self._pairs_within(kept, self.antecedent, self.consequent)
        return scores.scatter_reduce(0, targets, scores.index_select(0, sources), reduce="amin")

    def _pairs_within(self, kept: Tensor | None, targets: Tensor, sources: Tensor) -> tuple[Tensor, Tensor]:
        if kept is None:
            return targets, sources
        pairs = kept.index_select(0, self.antecedent) & kept.index_select(0, self.consequent)
        return targets.masked_select(pairs), sources.masked_select(pairs)


def _reachable(start: int, edges: list[list[int]]) -> set[int]:
    # iterative depth-first walk; the seen set makes cycles harmless
    seen: set[int] = set()
    stack = list(edges[start])
    while stack:
        tag = stack.pop()
        if tag not in seen:
            seen.add(tag)
            stack.extend(edges[tag])
    seen.discard(start)  # a cycle back to the start: a tag does not imply itself
    return seen


def _mark(size: int, positions: Tensor) -> Tensor:
    return torch.zeros(size, dtype=torch.bool).index_fill_(0, positions, True)


# ---- categories and subcategories ------------------------------------------------------------------------------


def subcategory(tag: str, category: str) -> str | None:
    """The Hydra package's derived subcategory: ``rating`` (meta safe/questionable/explicit), ``color`` or None."""
    if category == "meta" and tag in RATINGS:
        return "rating"
    if category == "general" and tag.startswith(COLOR_PREFIXES) and not tag.endswith(COLOR_EXCEPTIONS):
        return "color"
    return None


def excluded_mask(
    tags: Sequence[str],
    categories: Sequence[str] | None,
    exclude: Iterable[str] = (),
    exclude_tags: Iterable[str] = (),
) -> Tensor:
    """Bool mask [C] of tags to leave out: by category or subcategory name, or by tag name.

    Category names are e621's (``general``, ``species``, …) plus ``rating`` and ``color``; an unknown one is a
    ValueError. Tag names that are not in ``tags`` are ignored (lists may be shared between models).
    """
    exclude = {name.strip().lower() for name in exclude if name.strip()}
    unknown = sorted(exclude - set(E621_CATEGORIES) - set(SUBCATEGORIES))
    if unknown:
        raise ValueError(
            f"unknown categories to exclude: {', '.join(unknown)}; known: {', '.join(E621_CATEGORIES + SUBCATEGORIES)}"
        )
    if exclude and categories is None:
        raise ValueError("excluding categories needs the model's tag categories")
    if categories is not None and len(categories) != len(tags):
        raise ValueError(f"{len(categories)} categories for {len(tags)} tags")
    names = set(exclude_tags)
    mask = [tag in names for tag in tags]
    if exclude:
        for position, (tag, category) in enumerate(zip(tags, categories, strict=True)):
            mask[position] = mask[position] or category in exclude or subcategory(tag, category) in exclude
    return torch.tensor(mask, dtype=torch.bool)


def parse_tag_exclusions(text: str, graph: ImplicationGraph) -> Tensor:
    """The Hydra package's exclude-tags list → bool mask [C]. Words are separated by white space; ``#`` starts a
    comment as in group files. ``tag`` excludes the tag, ``~tag`` the tag and every tag implying it (``~canine``:
    canine, wolf, fox, …) and ``~~tag`` only the tags implying it. Unknown tags are ignored.

    (The package's parser drops the first letter of a plain word; we keep the word whole.)
    """
    mask = torch.zeros(len(graph), dtype=torch.bool)
    for line in text.splitlines():
        for word in re.split(r"(?:^|[ \t])#", line, maxsplit=1)[0].split():
            tilde = len(word) - len(word.lstrip("~"))
            position = graph.index.get(word[min(tilde, 2):])
            if position is None:
                continue
            if tilde < 2:
                mask[position] = True
            if tilde:
                mask.index_fill_(0, torch.tensor(graph.antecedents(position), dtype=torch.long), True)
    return mask


# ---- exclusive groups --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExclusiveGroup:
    """At most one of ``members`` survives, when every tag in ``requires`` passes and none in ``unless`` does."""

    members: tuple[str, ...]
    requires: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()


def parse_exclusive_group(text: str | Sequence[str]) -> ExclusiveGroup:
    """``[[!]REQ … :] T1 T2 …`` → ExclusiveGroup. ``!`` marks a tag that must *not* pass; everything up to the
    last word ending with ``:`` is a condition. At least two distinct members, else ValueError."""
    parts = text.split() if isinstance(text, str) else list(text)
    split = max((position + 1 for position, part in enumerate(parts) if part.endswith(":")), default=0)
    requires: list[str] = []
    unless: list[str] = []
    for position, part in enumerate(parts[:split]):
        word = part[:-1] if part.endswith(":") else part
        if not word:
            continue  # a lone ':'
        if word.startswith("!"):
            if len(word) == 1:
                raise ValueError(f"item {position + 1} is an empty '!' condition")
            unless.append(word[1:])
        else:
            requires.append(word)
    members = tuple(dict.fromkeys(part for part in parts[split:] if part))
    if len(members) < 2:
        raise ValueError(f"an exclusive group needs at least two distinct tags, got {' '.join(members) or 'none'}")
    return ExclusiveGroup(members, tuple(requires), tuple(unless))


def parse_exclusive_groups(text: str, source: str = "<groups>") -> list[ExclusiveGroup]:
    """One group per line; ``#`` at the start of a line or after a space starts a comment; blank lines skipped."""
    groups = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = re.split(r"(?:^|[ \t])#", line, maxsplit=1)[0].split()
        if words:
            try:
                groups.append(parse_exclusive_group(words))
            except ValueError as error:
                raise ValueError(f"{source}, line {number}: {error}") from None
    return groups


def _apply_group(
    group: ExclusiveGroup, probs: Tensor, thresholds: Tensor, kept: Tensor, graph: ImplicationGraph
) -> None:
    """In place on ``kept``. Conditions read the current selection: a tag passes when kept and p >= θ (an unknown
    condition tag never passes). The best kept member stays (tie: the earlier); the others and their A(·) go."""

    def passes(tag: str) -> bool:
        position = graph.index.get(tag)
        return position is not None and bool(kept[position]) and bool(probs[position] >= thresholds[position])

    if not all(passes(tag) for tag in group.requires) or any(passes(tag) for tag in group.unless):
        return
    present = [graph.index[tag] for tag in group.members if tag in graph.index and kept[graph.index[tag]]]
    if len(present) < 2:
        return
    winner = max(present, key=lambda position: (probs[position].item(), -present.index(position)))
    losers = _mark(len(graph), torch.tensor([position for position in present if position != winner]))
    drop = losers | graph.implying(losers)
    # Our decision: the winner always stays. The package removes A(loser) even when the winner is among them
    # (a malformed group where a member implies another), which can leave no member at all.
    drop[winner] = False
    kept &= ~drop


# ---- the two releases' selection -------------------------------------------------------------------------------


def select_jtp3(
    probs: Tensor,
    thresholds: Tensor | float,
    graph: ImplicationGraph,
    mode: str = "inherit",
    excluded: Tensor | None = None,
) -> Selected:
    """JTP-3 release: (index, score) of the tags output for one image, best first (ties by tag name).

    inherit/constrain change the probabilities before ``p >= threshold`` decides, so a tag can be output because a
    tag implying it scored high; ``excluded`` (bool [C]) tags are dropped at the threshold step and so remove
    nothing; remove/constrain-remove then drop every tag implied by a survivor.
    """
    _check_mode(mode, JTP3_MODES)
    probs, limits = _inputs(probs, thresholds, graph)
    if mode == "inherit":
        probs = graph.inherit(probs)
    elif mode in ("constrain", "constrain-remove"):
        probs = graph.constrain(probs)
    kept = probs >= limits
    if excluded is not None:
        kept &= ~_mask(excluded, graph)
    if mode in ("remove", "constrain-remove"):
        kept &= ~graph.implied_by(kept, strict=True)
    return _sorted(probs, kept, graph)


def select_hydra(
    probs: Tensor,
    thresholds: Tensor | float,
    graph: ImplicationGraph,
    mode: str = "inherit",
    excluded: Tensor | None = None,
    groups: Sequence[ExclusiveGroup] = (),
) -> Selected:
    """Hydra package: (index, score) of the tags output for one image, best first (ties by tag name).

    The steps and their order are in the module docstring. Scores differ from the probabilities only under
    inherit / constrain and their enforce- forms, and only over the tags already selected.
    """
    _check_mode(mode, HYDRA_MODES)
    probs, limits = _inputs(probs, thresholds, graph)
    passing = probs >= limits
    if mode in ("preserve", "inherit", "constrain"):
        kept = passing | graph.implied_by(passing)  # qualify: implied tags stay, even with θ = +inf
    elif mode.startswith("enforce"):
        # the intended rule: a failing tag goes with all of A(t). (The package deletes keys one by one and raises
        # KeyError when an antecedent removed earlier comes up again; we do not copy that.)
        failing = ~passing
        kept = ~(failing | graph.implying(failing))
    else:
        kept = passing
    for group in groups:
        _apply_group(group, probs, limits, kept, graph)
    if excluded is not None:
        kept &= ~_mask(excluded, graph)
    scores = probs
    if mode in ("inherit", "enforce-inherit"):
        scores = graph.inherit(probs, kept)
    elif mode in ("constrain", "constrain-remove", "enforce-constrain"):
        scores = graph.constrain(probs, kept)
    if mode in ("remove", "constrain-remove", "enforce-remove"):
        kept &= ~graph.implied_by(kept, strict=True)
    return _sorted(scores, kept, graph)


def _check_mode(mode: str, modes: tuple[str, ...]) -> None:
    if mode not in modes:
        raise ValueError(f"unknown implications mode {mode!r}; choose one of {', '.join(modes)}")


def _inputs(probs: Tensor, thresholds: Tensor | float, graph: ImplicationGraph) -> tuple[Tensor, Tensor]:
    # float64 on the CPU: float32 probabilities convert exactly, and a threshold such as 0.75 or 0.6199 compares
    # exactly as the releases compare Python floats
    if probs.shape != (len(graph),):
        raise ValueError(f"expected probabilities of shape [{len(graph)}], got {list(probs.shape)}")
    probs = probs.detach().to("cpu", torch.float64)
    limits = torch.as_tensor(thresholds, dtype=torch.float64).cpu()
    if limits.ndim == 0:
        limits = limits.expand(len(graph))
    elif limits.shape != probs.shape:
        raise ValueError(f"expected thresholds of shape [{len(graph)}] or one number, got {list(limits.shape)}")
    return probs, limits


def _mask(excluded: Tensor, graph: ImplicationGraph) -> Tensor:
    if excluded.shape != (len(graph),) or excluded.dtype != torch.bool:
        raise ValueError(f"expected an exclusion mask of bools, shape [{len(graph)}], got {excluded.dtype} "
                         f"{list(excluded.shape)}")
    return excluded.cpu()


def _sorted(scores: Tensor, kept: Tensor, graph: ImplicationGraph) -> Selected:
    positions = kept.nonzero().flatten().tolist()
    values = scores[kept].tolist()
    ranked = sorted(zip(positions, values, strict=True), key=lambda item: (-item[1], graph.tags[item[0]]))
    return [(position, value) for position, value in ranked]
