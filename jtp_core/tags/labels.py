"""A model's outputs as the tag code sees them: names, and what the model's files say about them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # no torch at import: the command line's --help must stay fast
    import torch

# Which RedRocket tool's rules turn a model's probabilities into tags (see tags/selection.py):
# "jtp1" PILOT's demo (p > threshold, the project's table-based implications), "jtp3" the JTP-3 release
# (implications applied before the threshold, p >= threshold), "hydra" the Hydra package (decide first).
RULES = ("jtp1", "jtp3", "hydra")


@dataclass(eq=False)
class Labels:
    """A model's outputs: tag names in output order (e621 spelling) and what its files say about them."""

    tags: list[str]
    categories: list[str] | None = None  # category name per output, when the files carry them
    implications: Mapping[str, tuple[str, ...]] | None = None  # implied tags per tag, when the files carry them
    validation: torch.Tensor | None = None  # [tags, thresholds, 4] validation counts (TP, FP, TN, FN), if any
    validation_csv: Path | None = None  # JTP-3's per-tag validation rows, for calibrated thresholds
    rules: str = "jtp1"
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rules not in RULES:
            raise ValueError(f"rules must be one of {', '.join(RULES)}; got {self.rules!r}")
        if self.categories is not None and len(self.categories) != len(self.tags):
            raise ValueError(f"{len(self.categories)} categories for {len(self.tags)} tags")

    @property
    def inclusive_threshold(self) -> bool:
        """RedRocket's JTP-3 / Hydra tools keep p >= threshold; PILOT's demo keeps p > threshold."""
        return self.rules != "jtp1"

    def cached(self, key: Any, make: Callable[[], Any]) -> Any:
        """Derived data (implication graph, calibrated thresholds, lookups) computed once per model."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]
