"""Calibrated thresholds: metrics, grammar, slider, Hydra validation tensors, the JTP-3 val CSV.

Expected values are worked out by hand from the formulas in JTP3_FACTS.md §7 (written next to each case).
"""

from __future__ import annotations

import math

import pytest
import torch

from jtp_core.tags.calibration import (
    CalibrationError,
    Metric,
    ValRow,
    from_symmetric,
    read_calibration_csv,
    read_val_csv,
    slider_metric,
    thresholds_from_val_csv,
    thresholds_from_validation,
    to_symmetric,
)

INF = math.inf


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---- metrics ----------------------------------------------------------------------------------------------------

# TP=6 FP=2 TN=88 FN=4
COUNTS = (6.0, 2.0, 88.0, 4.0)
HAND = {
    "f1.0": 12 / 18,  # 2·6 / (2·6 + 2 + 4)
    "f2": 30 / 48,  # 5·6 / (5·6 + 2 + 4·4)
    "f0.5": 7.5 / 10.5,  # 1.25·6 / (1.25·6 + 2 + 0.25·4)
    "csi": 6 / 12,  # 6 / (6 + 2 + 4)
    "cti": 6 / 12,
    "csi2.0": 6 / 14,  # 6 / (6 + 2·2 + 4)
    "j": 6 / 10 + 88 / 90 - 1,  # TPR + TNR − 1
    "informedness": 6 / 10 + 88 / 90 - 1,
    "p4": 2112 / (2112 + 94 * 6),  # n = 4·6·88; n / (n + (TP+TN)(FP+FN))
    "default": 12 / 18,  # f1.0@0.1, precision 0.75 passes
    "f1.0@0.8": -INF,  # precision 6/8 = 0.75 < 0.8
}


@pytest.mark.parametrize("spec", sorted(HAND))
def test_metric_values_by_hand(spec):
    metric = Metric.parse(spec)
    assert metric.score(torch.tensor(COUNTS)).item() == pytest.approx(HAND[spec], rel=1e-6)
    assert metric.score_row(*COUNTS) == pytest.approx(HAND[spec], rel=1e-12)


def test_metric_zero_counts_score_zero_and_precision_floor_gives_minus_inf():
    nothing = torch.tensor([[0.0, 0.0, 100.0, 0.0], [0.0, 5.0, 90.0, 5.0], [1.0, 9.0, 0.0, 0.0]])
    # 0/0 → 0 (never NaN); no positive predictions → precision undefined → −inf under a floor
    assert Metric.parse("f1.0").score(nothing).tolist()[:2] == [0.0, 0.0]
    assert Metric.parse("csi").score(nothing).tolist()[:2] == [0.0, 0.0]
    floored = Metric.parse("f1.0@0.1").score(nothing).tolist()
    # precision 0/0 → −inf; 0/5 → −inf; 1/10 = 0.1 meets the floor (>=): 2 / (2 + 9)
    assert floored[:2] == [-INF, -INF]
    assert floored[2] == pytest.approx(2 / 11)
    assert Metric.parse("f1.0@0.1").score_row(0, 0, 100, 0) == -INF
    assert Metric.parse("j").score_row(0, 0, 0, 0) == -1.0  # both rates 0/0 → 0, minus 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("default", Metric("f", 1.0, 0.1)),
        ("f", Metric("f", 1.0, 0.0)),
        ("f1.0", Metric("f", 1.0, 0.0)),
        ("f2", Metric("f", 2.0, 0.0)),
        ("f0.5@0.25", Metric("f", 0.5, 0.25)),
        ("F1.0@0.1", Metric("f", 1.0, 0.1)),
        ("csi", Metric("csi", 1.0, 0.0)),
        ("csi2.5@0.05", Metric("csi", 2.5, 0.05)),
        ("cti", Metric("csi", 1.0, 0.0)),
        ("j", Metric("j", 1.0, 0.0)),
        ("informedness", Metric("j", 1.0, 0.0)),
        ("p4", Metric("p4", 1.0, 0.0)),
    ],
)
def test_metric_grammar_good(spec, expected):
    assert Metric.parse(spec) == expected
    assert Metric.parse(expected.spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "g1.0", "f1.", "f1.0@1.0", "f1.0@0.1x", "f@", "f0", "csi0.0", "j2", "cti1.0", "f-1"]
)
def test_metric_grammar_bad(spec):
    with pytest.raises(ValueError, match=r"invalid metric .*\(f\|csi\)\(<n\.n>\)\?\(@0\.<digits>\)\?"):
        Metric.parse(spec)


def test_slider():
    assert slider_metric(0.5) == Metric.parse("f1.0@0.1")
    assert slider_metric(0.0) == Metric("f", 4.0, 0.1)  # 4^(1−0) = 4: recall
    assert slider_metric(1.0) == Metric("f", 0.25, 0.1)  # 4^(1−2) = 1/4: precision
    assert slider_metric(0.75).param == pytest.approx(0.5)  # 4^(−0.5)
    assert slider_metric(0.25).param == pytest.approx(2.0)  # 4^(0.5)
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="between 0 and 1"):
            slider_metric(bad)


def test_symmetric_scale():
    assert to_symmetric(0.75) == 0.5
    assert to_symmetric(0.5) == 0.0
    assert from_symmetric(0.5) == 0.75  # JTP-3's default -t 0.5 keeps p >= 0.75
    assert from_symmetric(-1.0) == 0.0
    assert from_symmetric(to_symmetric(0.2)) == pytest.approx(0.2)
    assert torch.equal(to_symmetric(torch.tensor([0.0, 1.0])), torch.tensor([-1.0, 1.0]))


# ---- Hydra: thresholds from the validation tensor ----------------------------------------------------------------


def test_thresholds_from_validation_by_hand():
    # T = 4 steps: t_i = (i+1)/5 = 0.2, 0.4, 0.6, 0.8
    validation = torch.tensor([
        # f1 per row: 20/30, 18/23, 16/19 (best, i=2), 10/15
        [[10, 10, 80, 0], [9, 4, 86, 1], [8, 1, 89, 2], [5, 0, 90, 5]],
        # f1: 10/20, 8/9, 6/8, 8/9 — a tie: the first (i=1, t=0.4) wins
        [[5, 5, 90, 0], [4, 0, 96, 1], [3, 0, 96, 2], [4, 0, 96, 1]],
        # nothing predicted: f1 = 0 everywhere, precision undefined → −inf under @0.1 → never output
        [[0, 0, 100, 0]] * 4,
    ], dtype=torch.float32)
    # logit(0.6) = ln 1.5 = 0.405465; bf16 steps are 2^-9 there: 207.6 steps → 208·2^-9 = 0.40625
    # logit(0.2) = −ln 4 = −1.386294; steps of 2^-7: 177.4 → −177·2^-7 = −1.3828125
    expected = [sigmoid(0.40625), sigmoid(-0.40625), INF]
    thresholds = thresholds_from_validation(validation, "f1.0@0.1")
    assert thresholds.dtype == torch.float32
    assert thresholds.tolist() == pytest.approx(expected, abs=1e-7)
    # without a precision floor the third tag scores 0 everywhere: the first step, t = 0.2
    assert thresholds_from_validation(validation, "f1.0")[2].item() == pytest.approx(sigmoid(-1.3828125), abs=1e-7)
    # default = f1.0@0.1
    assert torch.equal(thresholds_from_validation(validation), thresholds)


def test_thresholds_from_validation_facts_examples():
    # T = 99 → t_i = (i+1)/100; only one step predicts anything, so it is the best
    validation = torch.zeros(2, 99, 4)
    validation[0, 61] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # t = 0.62
    validation[1, 35] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # t = 0.36
    assert thresholds_from_validation(validation).tolist() == pytest.approx([0.620162, 0.360264], abs=1e-6)


def test_metric_choice_moves_the_threshold():
    # f2 favours recall: rows (TP,FP,TN,FN) at t = 0.25, 0.5, 0.75
    validation = torch.tensor([[[9, 9, 82, 1], [7, 2, 89, 3], [4, 0, 91, 6]]], dtype=torch.float32)
    # f1: 18/28 = .643, 14/19 = .737 (best), 8/14 = .571 → 0.5 → logit 0 → 0.5
    assert thresholds_from_validation(validation, "f1.0").tolist() == [0.5]
    # f2: 45/(45+9+4) = .776 (best), 35/(35+2+12) = .714, 20/(20+0+24) = .455 → 0.25
    # logit(0.25) = −ln 3 = −1.098612; steps of 2^-7: 140.6 → −141·2^-7 = −1.1015625
    assert thresholds_from_validation(validation, "f2.0").item() == pytest.approx(sigmoid(-1.1015625), abs=1e-7)


def test_thresholds_from_validation_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[tags, thresholds, 4\]"):
        thresholds_from_validation(torch.zeros(3, 5))


# ---- JTP-3: the val CSV ------------------------------------------------------------------------------------------

VAL_CSV = """tag,threshold,tp,fp,tn,fn
wolf,0.30,50,40,900,10
wolf,0.50,45,10,930,15
wolf,0.70,30,2,938,30
wolf,0.90,abc,1,2,3
fox,0.20,20,5,960,15
fox,0.40,19,1,964,18
cat,0.30,2,30,950,3
cat,0.60,1,0,990,9
dog,0.50,0,0,1000,10
bird,0.00,5,1,990,2

not_in_model,0.50,9,0,0,0
"""
TAGS = ["bird", "cat", "dog", "fox", "wolf", "lynx"]


@pytest.fixture
def val_csv(tmp_path):
    path = tmp_path / "val.csv"
    path.write_text(VAL_CSV, encoding="utf-8")
    return path


def test_read_val_csv_streams_rows_and_reports_bad_lines(val_csv):
    problems: list[str] = []
    rows = list(read_val_csv(val_csv, problems))
    assert problems == [f"{val_csv}:5: tp is not a number: 'abc'"]
    assert len(rows) == 10  # 11 data rows, 1 bad, the blank line skipped
    assert rows[0] == ValRow("wolf", 0.3, 50.0, 40.0, 900.0, 10.0)
    with pytest.raises(CalibrationError, match=r"val\.csv:5: tp is not a number"):
        list(read_val_csv(val_csv))


def test_read_val_csv_other_bad_lines(tmp_path):
    path = tmp_path / "odd.csv"
    # columns in another order plus an extra one are fine; a short row, a negative count, a threshold above 1
    # and bytes that are not UTF-8 are each reported on their own line
    path.write_bytes(
        b"FN,TN,FP,TP,Threshold,Tag,extra\n"
        b"1,2,3,4,0.5,wolf,x\n"
        b"1,2,3\n"
        b"1,2,-3,4,0.5,wolf,x\n"
        b"1,2,3,4,1.5,wolf,x\n"
        b"1,2,3,4,0.5,w\xffolf,x\n"
        b"4,3,2,1,0.25,fox,\n"
    )
    problems: list[str] = []
    rows = list(read_val_csv(path, problems))
    assert rows == [ValRow("wolf", 0.5, 4.0, 3.0, 2.0, 1.0), ValRow("fox", 0.25, 1.0, 2.0, 3.0, 4.0)]
    assert [problem.split(": ", 1)[0] for problem in problems] == [f"{path}:{line}" for line in (3, 4, 5, 6)]
    assert "expected at least 6 fields, found 3" in problems[0]
    assert "fp must be a finite number >= 0" in problems[1]
    assert "threshold must be between 0 and 1" in problems[2]
    assert "not UTF-8" in problems[3]


def test_read_val_csv_header_and_missing_file_fail_at_once(tmp_path):
    path = tmp_path / "calibration.csv"
    path.write_text("tag,threshold,cti\nwolf,0.5,0.6\n")
    with pytest.raises(CalibrationError, match=r"calibration\.csv:1: .*columns tag,threshold,tp,fp,tn,fn"):
        read_val_csv(path)  # eager: before any row is asked for
    with pytest.raises(CalibrationError, match="cannot read validation CSV"):
        read_val_csv(tmp_path / "missing.csv")


def test_thresholds_from_val_csv_by_hand(val_csv):
    rows = list(read_val_csv(val_csv, []))
    thresholds = thresholds_from_val_csv(rows, TAGS)
    assert thresholds.dtype == torch.float64
    # cti: wolf 50/100, 45/70 (best), 30/62 → 0.50 − 0.0001
    # fox 20/40 = 19/38 = 0.5, a tie → the lower threshold 0.20
    # cat: precision 2/32 < 0.098; recall 1/10 < 0.198 → no row qualifies
    # dog: TP = 0 is rejected; bird: 0.00 − 0.0001 clamps to 0; lynx has no rows
    assert thresholds.tolist() == [0.0, INF, INF, 0.1999, 0.4999, INF]


def test_thresholds_from_val_csv_metric_and_floors(val_csv):
    rows = list(read_val_csv(val_csv, []))
    # j = TPR + TNR − 1 for wolf: .8333 + .9574 − 1 = .7908 (best, t=0.30); .75 + .9894 − 1; .5 + .9979 − 1
    assert thresholds_from_val_csv(rows, ["wolf"], "j").tolist() == [0.2999]
    # with both floors at 0, TP = 0 rows qualify: dog gets its only row; cat's best cti is 1/10 (0.60) vs 2/35
    assert thresholds_from_val_csv(rows, ["dog", "cat"], "cti", 0.0, 0.0).tolist() == [0.4999, 0.5999]
    # a metric's own precision floor: with j@0.6 the 0.30 row (precision 50/90 = .556) is gone,
    # so .7394 at 0.50 beats .4979 at 0.70
    assert thresholds_from_val_csv(rows, ["wolf"], "j@0.6").tolist() == [0.4999]


def test_thresholds_from_val_csv_rounds_to_four_decimals():
    rows = [ValRow("a", 0.123456, 5, 1, 90, 1), ValRow("b", 1.0, 5, 1, 90, 1)]
    # 0.123456 − 0.0001 = 0.123356 → 0.1234; 1.0 − 0.0001 = 0.9999
    assert thresholds_from_val_csv(rows, ["a", "b"]).tolist() == [0.1234, 0.9999]
    assert thresholds_from_val_csv(rows, ["b"], epsilon=0.5).tolist() == [1.0]  # clamped


def test_read_calibration_csv(tmp_path):
    path = tmp_path / "calibration.csv"
    path.write_text("tag,threshold,cti\nwolf,0.4999,0.6429\nfox,,0.5\nnot_in_model,0.2,0.1\nbird,0.0000,0.6\n")
    # fox's blank threshold is skipped → +inf like the tags the file does not list
    assert read_calibration_csv(path, ["bird", "fox", "wolf", "lynx"]).tolist() == [0.0, INF, 0.4999, INF]
    path.write_text("tag,threshold\nwolf,0.5\nfox,1.5\n")
    with pytest.raises(CalibrationError, match=r"calibration\.csv:3: threshold must be between 0\.0 and 1\.0"):
        read_calibration_csv(path, ["wolf"])
    path.write_text("tag,score\nwolf,0.5\n")
    with pytest.raises(CalibrationError, match="columns tag and threshold"):
        read_calibration_csv(path, ["wolf"])
