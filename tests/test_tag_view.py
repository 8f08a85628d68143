"""What JTP Tagger sends its tag view: per image [tag, score, category] rows by score."""

from __future__ import annotations

import json
import shutil

import torch

from jtp_core.tags.tag_table import TagTable


def _run(pack, standin, checkpoint, **overrides):
    shutil.copytree(checkpoint, standin.models_dir / "jtp" / "TINY_PILOT", dirs_exist_ok=True)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    node = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets.update(threshold=0.3, max_tags=0)
    widgets.update(overrides)
    return node().tag(jtp_model=model, image=torch.rand(2, 32, 32, 3), **widgets)


def test_rows_per_image_by_score_without_categories(comfy, linear_checkpoint):
    standin, pack = comfy
    out = _run(pack, standin, linear_checkpoint, exclude_tags="solo")
    texts, scores = out["result"]
    rows = out["ui"]["jtp_tags"]
    assert len(rows) == 2 and out["ui"]["text"] == texts
    for image_rows, score_json in zip(rows, scores, strict=True):
        table = json.loads(score_json)
        assert {tag: score for tag, score, _ in image_rows} == table  # the kept tags, no more, no fewer
        assert [score for _, score, _ in image_rows] == sorted(table.values(), reverse=True)
        assert all(category is None for *_, category in image_rows)  # PILOT: no categories in its files
        assert "solo" not in table and all(score > 0.3 for score in table.values())


def test_categories_come_from_the_tag_table(comfy, linear_checkpoint):
    standin, pack = comfy
    table = TagTable({"anthro": "general", "female": "general", "male": "general", "solo": "general",
                      "blue_eyes": "general", "red_hat": "general", "hi_res": "meta"}, {})
    out = _run(pack, standin, linear_checkpoint, threshold=0.0, tag_options={"tag_table": table})
    categories = {tag: category for tag, _, category in out["ui"]["jtp_tags"][0]}
    assert categories["hi_res"] == "meta" and categories["anthro"] == "general"
    assert categories["tag_9"] == "unknown"  # not in the table


def test_hydra_chips_show_the_categories_the_options_went_by(comfy, tmp_path):
    """Hydra 3.5 carries its own categories; a tag table from JTP Tag Options (JTP-3's, which disagrees) must not
    recolour the chips: the real ComfyUI showed blue_eyes as 'general' while exclude_categories went by the
    model's 'copyright' for it."""
    from hydra_checkpoints import labels_text, tiny_tag_names, write_hydra_checkpoint

    standin, pack = comfy
    write_hydra_checkpoint(standin.models_dir / "jtp" / "TINY_H35" / "tiny.safetensors", "rr_hydra2", 12, seed=6)
    tags = tiny_tag_names(12)
    model_category = {line.split(" ")[0]: line.split(" ")[1] for line in labels_text("rr_hydra2", tags).split("\n")}
    table = TagTable(dict.fromkeys(tags, "general"), {})  # every tag 'general'
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_H35", "cpu", "fp32", 64)
    node = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets.update(threshold=0.0, max_tags=0, calibration="off")
    out = node().tag(jtp_model=model, image=torch.rand(1, 40, 56, 3), **widgets,
                     tag_options={"tag_table": table, "exclude_categories": "copyright", "implications": "off"})
    rows = out["ui"]["jtp_tags"][0]
    assert {tag: category for tag, _, category in rows} == {
        tag: category for tag, category in model_category.items() if category != "copyright"}
