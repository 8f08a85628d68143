import json
import shutil

import pytest
import torch


def _install_model(standin, checkpoint, name="TINY_PILOT"):
    target = standin.models_dir / "jtp" / name
    shutil.copytree(checkpoint, target)
    return name


def test_pack_registers_nodes_and_model_folder_once(comfy):
    standin, pack = comfy
    assert set(pack.NODE_CLASS_MAPPINGS) >= {"JTPModelLoader", "JTPTagger"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    pack.NODE_CLASS_MAPPINGS["JTPModelLoader"].INPUT_TYPES()
    assert standin.folders["jtp"] == [str(standin.models_dir / "jtp")]


def test_every_input_has_a_tooltip(comfy):
    _, pack = comfy
    for name, node in pack.NODE_CLASS_MAPPINGS.items():
        spec = node.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, (_, options) in spec.get(section, {}).items():
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert node.CATEGORY.startswith("image/tagging")


def test_loader_lists_known_and_local_models(comfy, linear_checkpoint):
    standin, pack = comfy
    name = _install_model(standin, linear_checkpoint)
    choices = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"].INPUT_TYPES()["required"]["model"][0]
    assert choices[:2] == ["JTP_PILOT", "JTP_PILOT2"] and name in choices


def test_tagger_node_tags_each_image_with_progress(comfy, linear_checkpoint, tiny_tagger):
    standin, pack = comfy
    name = _install_model(standin, linear_checkpoint)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load(name, "auto", "auto")
    node = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets.update(batch_size=2, threshold=0.0, max_tags=3)
    images = torch.rand(5, 40, 60, 3)
    out = node().tag(jtp_model=model, image=images, **widgets)
    texts, scores = out["result"]
    assert len(texts) == len(scores) == 5 and out["ui"]["text"] == texts
    assert all(len(text.split(", ")) == 3 for text in texts)
    assert standin.loaded == [model.patcher]  # went through ComfyUI's memory management
    assert standin.progress == [(2, 5), (4, 5), (5, 5)]  # one update per chunk
    expected = tiny_tagger.predict_image_tensor(images)
    for row, score_json in zip(expected, scores, strict=True):
        table = json.loads(score_json)
        assert list(table) == [tiny_tagger.tags[i] for i in torch.argsort(row, descending=True)[:3].tolist()]


def test_cancel_between_chunks(comfy, linear_checkpoint):
    standin, pack = comfy
    name = _install_model(standin, linear_checkpoint)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load(name, "cpu", "fp32")
    node = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets["batch_size"] = 1
    standin.interrupt_after = 2
    from comfy_standin import InterruptProcessingException

    with pytest.raises(InterruptProcessingException):
        node().tag(jtp_model=model, image=torch.rand(6, 32, 32, 3), **widgets)
    assert standin.progress == [(1, 6), (2, 6)]  # stopped after the second chunk
