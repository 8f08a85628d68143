"""From probabilities to a prompt string and a score table.

Defaults reproduce RedRocket's demo (top 250, score strictly above 0.2, by score, ", "-joined, underscores
as spaces) plus the parenthesis escaping Stable Diffusion front ends expect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

ORDERS = ("score", "alphabetical")


@dataclass(frozen=True)
class TagOptions:
    threshold: float = 0.2  # keep tags scoring strictly above this
    max_tags: int = 250  # at most this many predicted tags; 0 = no limit
    exclude: tuple[str, ...] = ()  # tags to drop; with or without underscores, * matches anything
    trigger_words: tuple[str, ...] = ()  # written first, as given (e.g. a LoRA's trigger)
    replace_underscores: bool = True
    escape_parentheses: bool = True
    weighted: bool = False  # "(tag:0.93)" instead of "tag"
    order: str = "score"
    separator: str = ", "

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}; got {self.order!r}")
        if self.max_tags < 0:
            raise ValueError("max_tags must be 0 (no limit) or more")


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


def select_tags(probs: torch.Tensor, tags: Sequence[str], options: TagOptions) -> list[tuple[str, float]]:
    """Tags above the threshold among the top ``max_tags``, minus exclusions, by score (descending)."""
    probs = probs.detach().float().cpu()
    order = torch.argsort(probs, descending=True, stable=True)
    excluded = exclusion_matcher(options.exclude)
    triggers = {normalize_tag(word) for word in options.trigger_words}
    selected: list[tuple[str, float]] = []
    for index in order[: options.max_tags or None].tolist():
        score = float(probs[index])
        if not score > options.threshold:
            break
        tag = tags[index]
        normalized = normalize_tag(tag)
        if (excluded and excluded.fullmatch(normalized)) or normalized in triggers:
            continue
        selected.append((tag, score))
    if options.order == "alphabetical":
        selected.sort(key=lambda item: format_tag(item[0], options))
    return selected


def format_tag(tag: str, options: TagOptions, score: float | None = None) -> str:
    text = tag.replace("_", " ") if options.replace_underscores else tag
    if options.escape_parentheses:
        text = text.replace("(", r"\(").replace(")", r"\)")
    if options.weighted and score is not None:
        text = f"({text}:{score:.2f})"
    return text


def format_tags(selected: Sequence[tuple[str, float]], options: TagOptions) -> str:
    words = list(options.trigger_words) + [format_tag(tag, options, score) for tag, score in selected]
    return options.separator.join(words)


def tag_result(probs: torch.Tensor, tags: Sequence[str], options: TagOptions | None = None) -> TagResult:
    """One image's probabilities → prompt string + score table."""
    options = options or TagOptions()
    selected = select_tags(probs, tags, options)
    return TagResult(text=format_tags(selected, options), scores={tag: round(score, 4) for tag, score in selected})


def tag_results(probs: torch.Tensor, tags: Sequence[str], options: TagOptions | None = None) -> list[TagResult]:
    return [tag_result(row, tags, options) for row in probs]
