"""Prompt check: how much of an e621-style prompt a tagger sees in an image.

A prompt is read the way Stable Diffusion front ends read it: tags separated by commas (or new lines),
``(tag:1.2)`` / ``(tag)`` / ``[tag]`` weights (nested groups multiply), ``\\(`` and ``\\)`` literal
parentheses, spaces or underscores alike. LoRA/embedding calls (``<lora:x:1>``) and ``BREAK`` are not tags.

Each prompt tag is matched to the model's vocabulary (after an optional alias). A tag the model does not
know is *not checkable*: it is reported and left out of the score, never counted as seen or missing.

Adherence of one image = Σ weight of the checkable prompt tags the model sees / Σ weight of all checkable
prompt tags, minus ``negative_penalty`` × Σ weight of the unwanted (negative prompt) tags it sees / the same
denominator — so with penalty 1 one unwanted tag costs as much as one missing tag. Clamped to [0, 1].
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .tag_table import TagTable, tag_key

DEFAULT_WEIGHT_STEP = 1.1  # "(tag)" = ×1.1, "[tag]" = ÷1.1, as in the A1111 / ComfyUI prompt syntax
_WEIGHT = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$")
_NOT_TAGS = re.compile(r"^(?:<[^>]*>|BREAK|AND)$")


@dataclass(frozen=True)
class PromptTag:
    text: str  # as written, without weight syntax
    key: str  # e621 spelling (lower case, underscores)
    weight: float
    alternatives: tuple[str, ...] = ()  # other readings, e.g. "membrane (anatomy)" typed without escapes


@dataclass
class _Group:
    opener: str
    children: list = field(default_factory=list)  # str (one literal char), ",", or _Group
    weight: float | None = None


def parse_prompt(prompt: str) -> list[PromptTag]:
    """The tags of a prompt with their weights, in order; a tag written twice is kept once (highest weight)."""
    root = _parse_groups(prompt or "")
    pieces: list[list[tuple[str, float, bool]]] = [[]]  # per tag: (char, weight, is_group_bracket)
    _flatten(root, 1.0, pieces)
    tags: dict[str, PromptTag] = {}
    for piece in pieces:
        tag = _tag_from_piece(piece)
        if tag is None:
            continue
        known = tags.get(tag.key)
        if known is None or tag.weight > known.weight:
            tags[tag.key] = tag
    return list(tags.values())


def _parse_groups(text: str) -> _Group:
    root = _Group("")
    stack = [root]
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            stack[-1].children.append(text[index + 1])  # escaped: always a literal
            index += 2
            continue
        if char in "([":
            group = _Group(char)
            stack[-1].children.append(group)
            stack.append(group)
        elif char in ")]" and len(stack) > 1 and stack[-1].opener == ("(" if char == ")" else "["):
            _close(stack.pop())
        elif char in ",\n":
            stack[-1].children.append(",")
        else:
            stack[-1].children.append(char)  # includes a stray closing bracket
        index += 1
    while len(stack) > 1:  # unclosed groups end with the prompt, as in the front ends
        _close(stack.pop())
    return root


def _close(group: _Group) -> None:
    """Read a trailing ':1.2' inside '( )' as the group's weight; else the default step."""
    if group.opener == "(":
        chars = "".join(child if isinstance(child, str) else "\0" for child in group.children)
        match = _WEIGHT.search(chars)
        if match and chars[: match.start()].strip(" \0,"):  # "(:3)" is the tag ":3", not weight 3
            del group.children[match.start():]
            group.weight = float(match.group(1))
            return
        group.weight = DEFAULT_WEIGHT_STEP
    else:
        group.weight = 1 / DEFAULT_WEIGHT_STEP


def _flatten(group: _Group, weight: float, pieces: list[list[tuple[str, float, bool]]]) -> None:
    for child in group.children:
        if isinstance(child, _Group):
            inner = weight * (child.weight if child.weight is not None else 1.0)
            pieces[-1].append((child.opener, inner, True))
            _flatten(child, inner, pieces)
            pieces[-1].append((")" if child.opener == "(" else "]", inner, True))
        elif child == ",":
            pieces.append([])
        else:
            pieces[-1].append((child, weight, False))


def _tag_from_piece(piece: list[tuple[str, float, bool]]) -> PromptTag | None:
    literal = [(char, weight) for char, weight, bracket in piece if not bracket]
    text = " ".join("".join(char for char, _ in literal).split())
    if not text or _NOT_TAGS.match(text):
        return None
    weight = next(weight for char, weight in literal if not char.isspace())
    # the same tag with its unescaped brackets kept, for e621 names such as "membrane_(anatomy)"
    first = next(i for i, (char, _, bracket) in enumerate(piece) if not bracket and not char.isspace())
    with_brackets = " ".join("".join(char for char, _, _ in piece[first:]).split())
    while with_brackets[-1:] in (")", "]") and not _balanced(with_brackets):  # closers of enclosing groups
        with_brackets = with_brackets[:-1].rstrip()
    alternatives = ()
    if with_brackets != text and _balanced(with_brackets):
        alternatives = (tag_key(with_brackets),)
    return PromptTag(text=text, key=tag_key(text), weight=max(weight, 0.0), alternatives=alternatives)


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def parse_aliases(text: str) -> dict[str, str]:
    """'kitty=domestic_cat, doggo -> canine' → {alias: tag}; blank or malformed entries are an error."""
    aliases: dict[str, str] = {}
    for entry in (part.strip() for part in re.split(r"[,\n]", text or "")):
        if not entry:
            continue
        match = re.fullmatch(r"(.+?)\s*(?:=|->)\s*(.+)", entry)
        if match is None:
            raise ValueError(f"aliases: write each one as 'alias=tag'; got {entry!r}")
        old, new = match.groups()
        aliases[old] = new
    return aliases


@dataclass
class TagCheck:
    text: str  # as written in the prompt
    tag: str | None  # the model's tag it was matched to; None = not checkable
    weight: float
    score: float | None  # the model's probability (best over tags implying it, with a tag table)


@dataclass
class ImageCheck:
    adherence: float  # in [0, 1]
    seen: list[TagCheck]
    missing: list[TagCheck]
    unwanted: list[TagCheck]  # negative prompt tags the model sees
    not_checkable: list[str]  # prompt (and negative prompt) tags the model does not know
    mean_score: float  # weighted mean probability of the checkable prompt tags (a tie-breaker)

    def as_dict(self) -> dict:
        def rows(checks: list[TagCheck]) -> list[list]:
            return [[check.tag, round(check.score or 0.0, 4), round(check.weight, 3)] for check in checks]

        return {
            "adherence": round(self.adherence, 4),
            "seen": rows(self.seen),
            "missing": rows(self.missing),
            "unwanted": rows(self.unwanted),
            "not_checkable": list(self.not_checkable),
            "mean_score": round(self.mean_score, 4),
        }


class PromptChecker:
    """Matches a prompt (and a negative prompt) to a model's tags once, then checks any number of images."""

    def __init__(
        self,
        prompt: str,
        model_tags: Sequence[str],
        negative_prompt: str = "",
        threshold: float = 0.2,
        inclusive: bool = False,
        negative_penalty: float = 1.0,
        tag_table: TagTable | None = None,
        aliases: Mapping[str, str] | None = None,
        thresholds: torch.Tensor | None = None,
    ) -> None:
        self.threshold = threshold
        # per-tag thresholds [C] (calibrated, JTP-3 / Hydra) instead of the single threshold; inf = never seen
        self.thresholds = None if thresholds is None else thresholds.detach().double().cpu()
        self.inclusive = inclusive  # Hydra family keeps p >= t, PILOT p > t
        self.negative_penalty = negative_penalty
        self._index = {tag_key(tag): i for i, tag in enumerate(model_tags)}
        self._model_tags = list(model_tags)
        self._aliases = {tag_key(old): tag_key(new) for old, new in (aliases or {}).items()}
        if tag_table is not None:
            self._aliases.update({tag_key(old): tag_key(new) for old, new in getattr(tag_table, "aliases", {}).items()})
        self._implied_by = _implying_indices(model_tags, tag_table)
        self.positive = _dedupe(self._match(tag) for tag in parse_prompt(prompt))
        positive_keys = {check.tag for check in self.positive if check.tag}
        # a tag in both prompts is wanted: the positive prompt wins
        self.negative = [check for check in _dedupe(self._match(tag) for tag in parse_prompt(negative_prompt))
                         if check.tag not in positive_keys or check.tag is None]
        self.not_checkable = [check.text for check in self.positive + self.negative if check.tag is None]

    def _match(self, tag: PromptTag) -> TagCheck:
        for key in (tag.key, *tag.alternatives):
            key = self._aliases.get(key, key)
            if key in self._index:
                return TagCheck(text=tag.text, tag=self._model_tags[self._index[key]], weight=tag.weight, score=None)
        return TagCheck(text=tag.text, tag=None, weight=tag.weight, score=None)

    def _score(self, probs: torch.Tensor, tag: str) -> tuple[float, bool]:
        """(best probability of the tag or a tag implying it, whether any of them passes its threshold)."""
        index = self._index[tag_key(tag)]
        candidates = [index, *self._implied_by.get(index, ())]
        scores = probs[candidates].double()
        limits = self.thresholds[candidates] if self.thresholds is not None else torch.full_like(scores, self.threshold)
        passes = scores >= limits if self.inclusive else scores > limits
        return float(scores.max()), bool(passes.any())

    def check(self, probs: torch.Tensor) -> ImageCheck:
        """One image's probabilities [tags] → its check."""
        probs = probs.detach().float().cpu()
        seen, missing, unwanted = [], [], []
        for check in self.positive:
            if check.tag is None:
                continue
            score, passes = self._score(probs, check.tag)
            (seen if passes else missing).append(TagCheck(check.text, check.tag, check.weight, score))
        for check in self.negative:
            if check.tag is None:
                continue
            score, passes = self._score(probs, check.tag)
            if passes:
                unwanted.append(TagCheck(check.text, check.tag, check.weight, score))
        total = sum(check.weight for check in seen + missing)
        if total > 0:
            share = sum(check.weight for check in seen) / total
            penalty = self.negative_penalty * sum(check.weight for check in unwanted) / total
            adherence = min(1.0, max(0.0, share - penalty))
            mean_score = sum(check.weight * check.score for check in seen + missing) / total
        else:  # nothing checkable: no evidence either way
            adherence = mean_score = 0.0
        return ImageCheck(adherence, seen, missing, unwanted, list(self.not_checkable), mean_score)

    def check_batch(self, probs: torch.Tensor) -> list[ImageCheck]:
        return [self.check(row) for row in probs]


def _dedupe(checks) -> list[TagCheck]:
    """One entry per model tag (two spellings or an alias of the same tag count once, at the higher weight)."""
    kept: dict[str, TagCheck] = {}
    for check in checks:
        key = check.tag or f"\0{check.text}"
        if key not in kept or check.weight > kept[key].weight:
            kept[key] = check
    return list(kept.values())


def best_index(checks: Sequence[ImageCheck]) -> int:
    """The image that follows the prompt best: highest adherence, then fewest unwanted, then highest mean score."""
    def rank(i: int) -> tuple[float, float, float]:
        check = checks[i]
        return (check.adherence, -sum(c.weight for c in check.unwanted), check.mean_score)

    return max(range(len(checks)), key=rank)


def _implying_indices(model_tags: Sequence[str], table: TagTable | None) -> dict[int, tuple[int, ...]]:
    """For each model tag, the model tags that imply it (with a tag table): seeing 'wolf' is seeing 'canine'."""
    if table is None:
        return {}
    index = {tag_key(tag): i for i, tag in enumerate(model_tags)}
    implied_by: dict[int, list[int]] = {}
    for i, tag in enumerate(model_tags):
        for implied in table.implied(tag):
            target = index.get(implied)
            if target is not None:
                implied_by.setdefault(target, []).append(i)
    return {target: tuple(sources) for target, sources in implied_by.items()}
