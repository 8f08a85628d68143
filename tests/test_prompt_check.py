"""Prompt Check: prompt reading and scoring on hand-made probabilities, and the node on the tiny model.

Expected numbers are worked out by hand from the rule in the issue: adherence = Σ weight of seen prompt tags /
Σ weight of checkable prompt tags − penalty × Σ weight of unwanted tags seen / the same sum, clamped to [0, 1].
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from jtp_core.tags.prompt_check import PromptChecker, best_index, parse_aliases, parse_prompt
from jtp_core.tags.tag_table import TagTable

TAGS = ["anthro", "female", "male", "solo", "membrane_(anatomy)", "blue_eyes", "red_hat", "hi_res", "wolf", "canine"]


def probs(**scores: float) -> torch.Tensor:
    row = torch.zeros(len(TAGS))
    for tag, score in scores.items():
        row[TAGS.index(tag)] = score
    return row


def weights(prompt: str) -> dict[str, float]:
    return {tag.key: round(tag.weight, 4) for tag in parse_prompt(prompt)}


def test_spelling_variants_meet_on_the_e621_name():
    assert weights("Blue Eyes, blue_eyes,  red   hat ,\nhi_res") == {"blue_eyes": 1.0, "red_hat": 1.0, "hi_res": 1.0}


def test_weights_nesting_and_brackets():
    assert weights("(anthro:1.3), ((solo)), [male], (female, blue eyes:0.5), (red_hat:-1)") == {
        "anthro": 1.3, "solo": 1.21, "male": round(1 / 1.1, 4), "female": 0.5, "blue_eyes": 0.5, "red_hat": 0.0,
    }
    assert weights("((wolf:1.5))") == {"wolf": 1.65}  # the outer group multiplies the inner weight


def test_escaped_and_unescaped_parentheses():
    escaped = parse_prompt(r"membrane \(anatomy\), (membrane \(anatomy\):1.4)")
    assert [(t.key, t.weight) for t in escaped] == [("membrane_(anatomy)", 1.4)]
    # typed without escapes, front ends read "(anatomy)" as a weight group: both readings are kept
    (plain,) = parse_prompt("membrane (anatomy)")
    assert plain.key == "membrane_anatomy" and plain.alternatives == ("membrane_(anatomy)",)
    assert [t.key for t in parse_prompt("(:3), (solo:1.1)")] == [":3", "solo"]  # ":3" is a tag, not weight 3


def test_lora_calls_and_break_are_not_tags():
    assert list(weights("<lora:foo:0.8>, solo, BREAK, anthro")) == ["solo", "anthro"]


def test_adherence_is_the_weighted_share_of_seen_tags():
    checker = PromptChecker("(anthro:2), female, blue eyes", TAGS, threshold=0.5)
    check = checker.check(probs(anthro=0.9, female=0.2, blue_eyes=0.7))
    assert check.adherence == pytest.approx(3 / 4)  # anthro (2) + blue_eyes (1) of 4
    assert [c.tag for c in check.missing] == ["female"] and check.missing[0].score == pytest.approx(0.2)
    assert check.not_checkable == [] and check.unwanted == []


def test_threshold_rule_strict_or_inclusive():
    row = probs(solo=0.5)
    assert PromptChecker("solo", TAGS, threshold=0.5).check(row).adherence == 0.0  # PILOT: p > t
    assert PromptChecker("solo", TAGS, threshold=0.5, inclusive=True).check(row).adherence == 1.0  # Hydra: p >= t


def test_unknown_tags_are_reported_not_counted():
    checker = PromptChecker("solo, masterpiece, best quality, membrane (anatomy)", TAGS, threshold=0.5)
    check = checker.check(probs(solo=0.9, **{"membrane_(anatomy)": 0.1}))
    assert check.not_checkable == ["masterpiece", "best quality"]
    assert check.adherence == pytest.approx(0.5)  # solo seen, membrane_(anatomy) missing; unknowns left out
    assert PromptChecker("masterpiece", TAGS).check(probs()).adherence == 0.0  # nothing checkable: no credit


def test_negative_prompt_penalty():
    prompt, negative = "anthro, female, solo, blue_eyes", "male, (hi res:2), unknown_thing, solo"
    row = probs(anthro=0.9, female=0.9, solo=0.9, blue_eyes=0.9, male=0.8, hi_res=0.9)
    check = PromptChecker(prompt, TAGS, negative_prompt=negative, threshold=0.5, negative_penalty=0.5).check(row)
    # solo is wanted (in the prompt), so not unwanted; male (1) + hi_res (2) seen: 1 − 0.5 × 3 / 4
    assert sorted(c.tag for c in check.unwanted) == ["hi_res", "male"]
    assert check.adherence == pytest.approx(1 - 0.5 * 3 / 4)
    assert check.not_checkable == ["unknown_thing"]
    only_report = PromptChecker(prompt, TAGS, negative_prompt=negative, threshold=0.5, negative_penalty=0).check(row)
    assert only_report.adherence == 1.0 and len(only_report.unwanted) == 2
    harsh = PromptChecker("anthro", TAGS, negative_prompt="male", threshold=0.5, negative_penalty=5).check(row)
    assert harsh.adherence == 0.0  # clamped


def test_aliases_and_implications_from_a_tag_table():
    table = TagTable({"wolf": "species", "canine": "species"}, {"wolf": ["canine"]})
    checker = PromptChecker("doggo, kitty", TAGS, threshold=0.5, tag_table=table, aliases={"doggo": "canine"})
    check = checker.check(probs(wolf=0.9, canine=0.1))  # seeing a wolf is seeing a canine
    assert [c.tag for c in check.seen] == ["canine"] and check.seen[0].score == pytest.approx(0.9)
    assert check.not_checkable == ["kitty"]
    without_table = PromptChecker("canine", TAGS, threshold=0.5).check(probs(wolf=0.9, canine=0.1))
    assert without_table.adherence == 0.0


def test_best_image_prefers_adherence_then_fewer_unwanted_then_scores():
    checker = PromptChecker("anthro, solo", TAGS, negative_prompt="male", threshold=0.5)
    batch = torch.stack([
        probs(anthro=0.9, solo=0.2),  # 50 %
        probs(anthro=0.6, solo=0.6, male=0.9),  # 100 % − 50 % penalty
        probs(anthro=0.6, solo=0.6),  # 100 %
        probs(anthro=0.95, solo=0.95),  # 100 %, surer: the best
    ])
    checks = checker.check_batch(batch)
    assert [round(c.adherence, 3) for c in checks] == [0.5, 0.5, 1.0, 1.0]
    assert best_index(checks) == 3
    assert best_index(checks[:2]) == 0  # same adherence: the one without unwanted tags


# ---- the node ------------------------------------------------------------------------------------------------


def _install_model(standin, checkpoint, name="TINY_PILOT"):
    shutil.copytree(checkpoint, standin.models_dir / "jtp" / name)
    return name


def test_prompt_check_node_on_the_tiny_model(comfy, linear_checkpoint, tiny_tagger):
    standin, pack = comfy
    name = _install_model(standin, linear_checkpoint)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load(name, "cpu", "fp32")
    node = pack.NODE_CLASS_MAPPINGS["JTPPromptCheck"]
    images = torch.rand(3, 40, 48, 3)
    expected = tiny_tagger.predict_image_tensor(images)
    # a threshold between the 1st and 2nd image's score of "solo": only some images see it
    solo = expected[:, tiny_tagger.tags.index("solo")]
    threshold = float(solo.median())
    out = node().check(model, images, "solo, (anthro:0.5), not_a_tag", threshold, 1.0, 2,
                       negative_prompt="", aliases="")
    best_image, best, adherence, missing, unwanted, report = out["result"]
    anthro = expected[:, tiny_tagger.tags.index("anthro")]
    for i in range(3):
        want = ((solo[i] > threshold).float() * 1.0 + (anthro[i] > threshold).float() * 0.5) / 1.5
        assert adherence[i] == pytest.approx(float(want))
    assert torch.equal(best_image, images[best:best + 1]) and adherence[best] == max(adherence)
    data = json.loads(report)
    assert data["best_index"] == best and data["images"][0]["not_checkable"] == ["not_a_tag"]
    assert out["ui"]["jtp_check"][0]["best"] == best and standin.loaded == [model.patcher]
    assert unwanted == ["", "", ""]


def test_prompt_check_aliases_widget():
    assert parse_aliases("kitty=domestic_cat, doggo -> canine\n") == {"kitty": "domestic_cat", "doggo": "canine"}
    with pytest.raises(ValueError, match="alias=tag"):
        parse_aliases("kitty")


def test_per_tag_thresholds_replace_the_single_one():
    limits = torch.full((len(TAGS),), 0.5, dtype=torch.float64)
    limits[TAGS.index("solo")] = 0.95  # a calibrated, stricter threshold
    limits[TAGS.index("female")] = float("inf")  # never qualifies
    checker = PromptChecker("anthro, solo, female", TAGS, threshold=0.1, thresholds=limits, inclusive=True)
    check = checker.check(probs(anthro=0.5, solo=0.9, female=0.99))
    assert [c.tag for c in check.seen] == ["anthro"]  # 0.5 >= 0.5 (inclusive); solo 0.9 < 0.95
    assert sorted(c.tag for c in check.missing) == ["female", "solo"]


def test_prompt_check_node_on_a_hydra_model_uses_its_rule_and_calibration(comfy):
    from hydra_checkpoints import write_hydra_checkpoint

    from jtp_core.tags.calibration import DEFAULT_METRIC, thresholds_from_validation

    standin, pack = comfy
    write_hydra_checkpoint(standin.models_dir / "jtp" / "TINY_H35" / "tiny-hydra.safetensors", "rr_hydra2", 12, seed=6)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_H35", "cpu", "fp32", 256)
    tagger = model.tagger
    images = torch.rand(2, 48, 40, 3)
    probs_ = tagger.predict_image_tensor(images)
    prompt = "canine, solo, (fox:2), blue eyes"
    keys = ["canine", "solo", "fox", "blue_eyes"]
    weights_ = [1.0, 1.0, 2.0, 1.0]
    node = pack.NODE_CLASS_MAPPINGS["JTPPromptCheck"]()
    threshold = float(probs_[0, tagger.tags.index("solo")])  # exactly a score: Hydra's rule keeps p >= t

    _, _, fixed, *_ = node.check(model, images, prompt, threshold, 1.0, 0, calibration="off")["result"]
    for i in range(2):
        seen = [float(probs_[i, tagger.tags.index(k)]) >= threshold for k in keys]
        assert fixed[i] == pytest.approx(sum(w for w, s in zip(weights_, seen, strict=True) if s) / 5)

    limits = thresholds_from_validation(tagger.labels.validation, DEFAULT_METRIC).double()
    _, _, calibrated, *_ = node.check(model, images, prompt, threshold, 1.0, 0, calibration="auto")["result"]
    for i in range(2):
        seen = [float(probs_[i, tagger.tags.index(k)]) >= float(limits[tagger.tags.index(k)]) for k in keys]
        assert calibrated[i] == pytest.approx(sum(w for w, s in zip(weights_, seen, strict=True) if s) / 5)
