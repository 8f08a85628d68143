"""Per-tag thresholds calibrated on validation counts, as RedRocket's JTP-3 and Hydra releases compute them.

Two sources of validation counts (TP, FP, TN, FN at a range of thresholds):

- Hydra 3.5 carries them inside the model file as a tensor ``validation`` [C, T, 4]; row i holds the counts at
  t_i = (i+1)/(T+1). ``thresholds_from_validation`` picks, per tag, the first t_i that maximises a metric and
  rounds it the way the Hydra package does: sigmoid(bf16(logit(t_i))).
- JTP-3 ships them as a CSV (``data/jtp-3-hydra-val.csv``, columns ``tag,threshold,tp,fp,tn,fn``, one row per tag
  and threshold). ``read_val_csv`` streams it and ``thresholds_from_val_csv`` follows the release's
  ``calibrate.py``: best metric per tag (tie: lower threshold), precision/recall floors, then threshold − 0.0001
  clamped to [0, 1] and written with 4 decimals.

A tag with no qualifying threshold gets +inf, so ``p >= threshold`` never outputs it. ``read_calibration_csv``
reads back what ``calibrate.py`` writes (``tag,threshold,<metric>``), as JTP-3's ``-t PATH`` does.

Metrics are named by a short string (``Metric.parse``): Hydra's grammar ``(f|csi)(<n.n>)?(@0.<digits>)?`` or
``default`` (= ``f1.0@0.1``), and JTP-3 ``calibrate.py``'s ``cti``, ``f<beta>``, ``j`` and ``p4``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import JTPError

TP, FP, TN, FN = range(4)

DEFAULT_METRIC = "f1.0@0.1"  # the Hydra package's default
JTP3_DEFAULT_METRIC = "cti"  # calibrate.py's default
VAL_COLUMNS = ("tag", "threshold", "tp", "fp", "tn", "fn")

METRIC_GRAMMAR = (
    "metrics: 'default' (= f1.0@0.1); f[BETA] (F-beta) or csi[W] (TP/(TP+W*FP+FN)), BETA and W positive numbers "
    "such as 1.0, 0.5 or 2 (default 1.0) — Hydra's grammar is (f|csi)(<n.n>)?(@0.<digits>)?; JTP-3's cti (= csi), "
    "j (informedness) and p4; any of them may end with @0.<digits>, a minimum precision "
    "(e.g. f1.0@0.1, f0.5, csi2.0@0.25, j@0.2)"
)
_ALIASES = {"cti": "csi", "ts": "csi", "csi": "csi", "f": "f", "j": "j", "bmi": "j", "informedness": "j", "p4": "p4"}
_SPEC = re.compile(r"(f|csi|cti|ts|j|bmi|informedness|p4)(\d+(?:\.\d+)?)?(?:@(0\.\d+))?")


class CalibrationError(JTPError):
    """A validation or calibration CSV is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class Metric:
    """A calibration metric: ``kind`` f / csi / j / p4 with its parameter (β for f, the FP weight for csi).

    ``min_precision`` > 0 wraps it as Hydra does: −inf where TP/(TP+FP) is below the floor or undefined.
    """

    kind: str
    param: float = 1.0
    min_precision: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("f", "csi", "j", "p4"):
            raise ValueError(f"unknown metric kind {self.kind!r}; {METRIC_GRAMMAR}")
        if not self.param > 0.0:
            raise ValueError(f"metric parameter must be positive, got {self.param}; {METRIC_GRAMMAR}")
        if not 0.0 <= self.min_precision <= 1.0:
            raise ValueError(f"min precision must be between 0 and 1, got {self.min_precision}")

    @classmethod
    def parse(cls, spec: str | Metric) -> Metric:
        """'default', 'f1.0@0.1', 'csi', 'cti', 'f2', 'j', ... → Metric; ValueError (with the grammar) otherwise."""
        if isinstance(spec, Metric):
            return spec
        text = str(spec).strip().lower()
        if text == "default":
            text = DEFAULT_METRIC
        match = _SPEC.fullmatch(text)
        if match is None:
            raise ValueError(f"invalid metric {spec!r}: {METRIC_GRAMMAR}")
        name, param, floor = match.groups()
        kind = _ALIASES[name]
        if param is not None and name not in ("f", "csi"):
            raise ValueError(f"invalid metric {spec!r}: {name} takes no parameter; {METRIC_GRAMMAR}")
        try:
            return cls(kind, float(param) if param else 1.0, float(floor) if floor else 0.0)
        except ValueError as error:
            raise ValueError(f"invalid metric {spec!r}: {error}") from None

    @property
    def spec(self) -> str:
        """The string that parses back to this metric."""
        text = self.kind + (f"{self.param!r}" if self.kind in ("f", "csi") else "")
        return text + (f"@{self.min_precision!r}" if self.min_precision else "")

    def score(self, counts: Tensor) -> Tensor:
        """Metric over counts [..., 4] (TP, FP, TN, FN) → [...] float, as the Hydra package computes it."""
        counts = counts.float()
        tp, fp, tn, fn = counts.unbind(-1)
        if self.kind == "f":
            weighted = tp * (1.0 + (self.param * self.param))
            value = weighted / (weighted + fp + fn * (self.param * self.param))
        elif self.kind == "csi":
            value = tp / (tp + fp * self.param + fn)
        elif self.kind == "j":
            value = (tp / (tp + fn)).nan_to_num(0.0) + (tn / (tn + fp)).nan_to_num(0.0) - 1.0
        else:
            product = 4.0 * tp * tn
            value = product / (product + (tp + tn) * (fp + fn))
        value = value.nan_to_num(0.0)  # 0/0 scores 0, never NaN
        if self.min_precision > 0.0:
            # NaN precision (no positive predictions) compares False, so it also gets −inf
            value = torch.where(tp / (tp + fp) >= self.min_precision, value, float("-inf"))
        return value

    def score_row(self, tp: float, fp: float, tn: float, fn: float) -> float:
        """The same metric on one row of Python numbers (float64, like ``calibrate.py``)."""
        if self.kind == "f":
            weighted = tp * (1.0 + (self.param * self.param))
            value = _ratio(weighted, weighted + fp + fn * (self.param * self.param))
        elif self.kind == "csi":
            value = _ratio(tp, tp + fp * self.param + fn)
        elif self.kind == "j":
            value = _ratio(tp, tp + fn) + _ratio(tn, tn + fp) - 1.0
        else:
            product = 4.0 * tp * tn
            value = _ratio(product, product + (tp + tn) * (fp + fn))
        if self.min_precision > 0.0 and not (tp + fp > 0 and tp / (tp + fp) >= self.min_precision):
            return -math.inf
        return value


def _ratio(numerator: float, denominator: float) -> float:
    # calibrate.py writes ``a / b if a else 0.0``: a zero numerator (also 0/0) scores 0
    return numerator / denominator if numerator else 0.0


def parse_metric(spec: str | Metric) -> Metric:
    return Metric.parse(spec)


def slider_metric(value: float) -> Metric:
    """Hydra's single recall↔precision slider: v in [0, 1] → F-beta with β = 4^(1−2v), min precision 0.1.

    v = 0 favours recall (β = 4), v = 0.5 is f1.0@0.1 (the default), v = 1 favours precision (β = 0.25).
    """
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the slider value must be between 0 and 1, got {value}")
    return Metric("f", 4.0 ** (1.0 - 2.0 * value), 0.1)


def to_symmetric(p: float | Tensor) -> float | Tensor:
    """Probability → JTP-3's symmetric scale s = 2p − 1 (p = 0.5 ↔ s = 0)."""
    return 2.0 * p - 1.0


def from_symmetric(s: float | Tensor) -> float | Tensor:
    """JTP-3's symmetric scale → probability: p = (s + 1) / 2."""
    return (s + 1.0) / 2.0


# ---- Hydra 3.5: counts inside the model file -------------------------------------------------------------------


def thresholds_from_validation(validation: Tensor, metric: str | Metric = DEFAULT_METRIC) -> Tensor:
    """validation [C, T, 4] (TP, FP, TN, FN at t_i = (i+1)/(T+1)) → thresholds [C] float32.

    Per tag the first t_i with the best metric, rounded as the Hydra package does (sigmoid(bf16(logit(t_i))));
    a tag whose best score is −inf (it never meets the metric's precision floor) gets +inf.
    """
    if validation.ndim != 3 or validation.shape[-1] != 4 or validation.shape[1] < 1:
        raise ValueError(f"validation counts must have the shape [tags, thresholds, 4], got {list(validation.shape)}")
    scores = Metric.parse(metric).score(validation)  # [C, T]
    steps = scores.shape[1]
    best = scores.max(dim=1).values
    # the first maximising index, spelled out (max/argmax tie behaviour is not promised on every device)
    positions = torch.arange(steps, device=scores.device).expand_as(scores)
    first = torch.where(scores == best.unsqueeze(1), positions, steps).amin(dim=1)
    levels = ((first + 1).double() / (steps + 1)).float()
    thresholds = levels.logit().to(torch.bfloat16).float().sigmoid()
    return torch.where(best == float("-inf"), float("inf"), thresholds).float().cpu()


# ---- JTP-3: counts in a CSV --------------------------------------------------------------------------------------


class ValRow(NamedTuple):
    """One row of a JTP-3 validation CSV: the counts of one tag at one threshold."""

    tag: str
    threshold: float
    tp: float
    fp: float
    tn: float
    fn: float


def read_val_csv(path: str | Path, problems: list[str] | None = None) -> Iterator[ValRow]:
    """Stream the rows of a JTP-3 validation CSV (``tag,threshold,tp,fp,tn,fn``; more columns, any order is fine).

    The file is opened and its header checked at once (CalibrationError if unreadable or a column is missing);
    rows are then read one at a time, so a 42 MB file costs no memory. A malformed row raises
    CalibrationError naming ``file:line`` — unless ``problems`` is a list: then the row is skipped and the
    same message appended to it. Broken CSV quoting always raises.
    """
    path = Path(path)
    try:
        # bad bytes become U+FFFD and are reported on their own line instead of failing at a random chunk
        handle = open(path, encoding="utf-8-sig", errors="replace", newline="")  # noqa: SIM115 - see _val_rows
    except OSError as error:
        raise CalibrationError(f"cannot read validation CSV {path}: {error.strerror or error}") from error
    try:
        reader = csv.reader(handle)
        columns = _val_columns(next(reader, None), path)
    except BaseException:
        handle.close()
        raise
    return _val_rows(handle, reader, columns, path, problems)


def _val_rows(handle, reader, columns: list[int], path: Path, problems: list[str] | None) -> Iterator[ValRow]:
    with handle:  # closed when the rows run out, on an error, or when the caller drops the iterator
        try:
            for fields in reader:
                if not any(field.strip() for field in fields):
                    continue  # blank lines are harmless
                try:
                    yield _val_row(fields, columns)
                except ValueError as error:
                    message = f"{path}:{reader.line_num}: {error}"
                    if problems is None:
                        raise CalibrationError(message) from None
                    problems.append(message)
        except csv.Error as error:
            raise CalibrationError(f"{path}:{reader.line_num}: not valid CSV ({error})") from error


def _val_columns(header: list[str] | None, path: Path) -> list[int]:
    names = [name.strip().lower() for name in header or []]
    missing = [name for name in VAL_COLUMNS if name not in names]
    if missing:
        found = ",".join(header) if header else "nothing"
        raise CalibrationError(
            f"{path}:1: a validation CSV needs the columns {','.join(VAL_COLUMNS)}; found {found!r}"
        )
    return [names.index(name) for name in VAL_COLUMNS]


def _val_row(fields: list[str], columns: list[int]) -> ValRow:
    if len(fields) <= max(columns):
        raise ValueError(f"expected at least {max(columns) + 1} fields, found {len(fields)}")
    tag = fields[columns[0]].strip()
    if not tag:
        raise ValueError("empty tag")
    if any("\ufffd" in field for field in fields):
        raise ValueError("not UTF-8 text")
    values = []
    for name, index in zip(VAL_COLUMNS[1:], columns[1:], strict=True):
        try:
            value = float(fields[index])
        except ValueError:
            raise ValueError(f"{name} is not a number: {fields[index]!r}") from None
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0, got {fields[index]!r}")
        values.append(value)
    if values[0] > 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {fields[columns[1]]!r}")
    return ValRow(tag, *values)


def thresholds_from_val_csv(
    rows: Iterable[ValRow],
    tags: Sequence[str],
    metric: str | Metric = JTP3_DEFAULT_METRIC,
    min_precision: float = 0.098,
    min_recall: float = 0.198,
    epsilon: float = -0.0001,
) -> Tensor:
    """JTP-3 ``calibrate.py`` over validation rows → thresholds [len(tags)] float64 (+inf: no qualifying row).

    Per tag the row with the best metric wins (tie: the lower threshold). A row qualifies when its precision and
    recall reach the floors; a row with TP = 0 qualifies only when both floors are <= 0. The winner's threshold
    + ``epsilon``, clamped to [0, 1], is rounded to 4 decimals as the release writes it. Float64 so that
    ``p >= threshold`` decides exactly as the release does with Python floats. Rows of other tags are ignored.
    """
    metric = Metric.parse(metric)
    index = {tag: position for position, tag in enumerate(tags)}
    best: dict[str, tuple[float, float]] = {}  # tag -> (score, threshold)
    for row in rows:
        if row.tag not in index or not _passes_floors(row, min_precision, min_recall):
            continue
        score = metric.score_row(row.tp, row.fp, row.tn, row.fn)
        if score == -math.inf:
            continue  # below the metric's own precision floor (``@0.x``)
        current = best.get(row.tag)
        if current is None or (score, -row.threshold) > (current[0], -current[1]):
            best[row.tag] = (score, row.threshold)
    thresholds = torch.full((len(tags),), math.inf, dtype=torch.float64)
    for tag, (_, threshold) in best.items():
        thresholds[index[tag]] = float(f"{min(1.0, max(0.0, threshold + epsilon)):.4f}")
    return thresholds


def _passes_floors(row: ValRow, min_precision: float, min_recall: float) -> bool:
    if row.tp == 0.0:
        return min_precision <= 0.0 and min_recall <= 0.0
    return row.tp / (row.tp + row.fp) >= min_precision and row.tp / (row.tp + row.fn) >= min_recall


# ---- JTP-3: a calibration CSV written by calibrate.py --------------------------------------------------------------


def read_calibration_csv(path: str | Path, tags: Sequence[str]) -> Tensor:
    """``tag,threshold[,…]`` (calibrate.py's output, JTP-3's ``-t PATH``) → thresholds [len(tags)] float64.

    As the release reads it: a blank threshold is skipped, anything else must be a number in [0, 1]; tags the
    file does not list get +inf (never output) and rows for tags the model lacks are ignored.
    """
    path = Path(path)
    index = {tag: position for position, tag in enumerate(tags)}
    thresholds = torch.full((len(tags),), math.inf, dtype=torch.float64)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, None) or []]
            if "tag" not in header or "threshold" not in header:
                raise CalibrationError(f"{path}:1: a calibration CSV needs the columns tag and threshold")
            tag_column, threshold_column = header.index("tag"), header.index("threshold")
            for fields in reader:
                if len(fields) <= max(tag_column, threshold_column) or not fields[threshold_column].strip():
                    continue  # blank threshold (or a blank line): the release skips it
                value = _calibration_value(fields[threshold_column], f"{path}:{reader.line_num}")
                position = index.get(fields[tag_column].strip())
                if position is not None:
                    thresholds[position] = value
    except OSError as error:
        raise CalibrationError(f"cannot read calibration CSV {path}: {error.strerror or error}") from error
    except (csv.Error, UnicodeDecodeError) as error:
        raise CalibrationError(f"{path}: not a readable CSV ({error})") from error
    return thresholds


def _calibration_value(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise CalibrationError(f"{where}: threshold must be between 0.0 and 1.0, or blank; got {text!r}")
    return value
