"""The folder-captioning nodes through the ComfyUI stand-in."""

from __future__ import annotations

import math
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from jtp_core import TagOptions, tag_result
from jtp_core.inference.images import open_image


def _model(standin, pack, checkpoint):
    shutil.copytree(checkpoint, standin.models_dir / "jtp" / "TINY_PILOT")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    return model


def _defaults(node, skip=()):
    spec = node.INPUT_TYPES()
    return {key: opts.get("default") for section in ("required", "optional")
            for key, (_, opts) in spec.get(section, {}).items() if key not in skip and "default" in opts}


def _jtp_error(pack):
    """The pack's own JTPError class (the pack is imported under another name, as ComfyUI does)."""
    return sys.modules[f"{pack.__name__}.jtp_core.errors"].JTPError


def _images(folder, count, sizes=((40, 30), (25, 60), (50, 50))):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        width, height = sizes[index % len(sizes)]
        path = folder / f"{index}.png"
        Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def test_caption_folder_node_writes_captions_with_progress_and_options_wire(comfy, linear_checkpoint, tmp_path):
    standin, pack = comfy
    model = _model(standin, pack, linear_checkpoint)
    paths = _images(tmp_path / "set", 5)
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    inputs = _defaults(node, skip=("jtp_model",))
    inputs.update(folder=str(tmp_path / "set"), batch_size=2, sidecar_floor=0.3)
    out = node().caption(jtp_model=model, tag_options={"trigger_words": ("ohwx",), "max_tags": 2}, **inputs)
    (summary,) = out["result"]
    assert "5 captioned" in summary and out["ui"]["text"] == [summary]
    assert standin.progress == [(2, 5), (4, 5), (5, 5)] and standin.loaded == [model.patcher]
    for path in paths:
        text = path.with_suffix(".txt").read_text()
        assert text.startswith("ohwx, ") and len(text.split(", ")) == 3  # the wire's options won
        assert path.with_suffix(".jtp.json").exists()
    assert math.isnan(node.IS_CHANGED(**inputs))  # never served from ComfyUI's cache

    standin.loaded.clear()
    (summary,) = node().caption(jtp_model=model, **inputs)["result"]
    assert "0 captioned, 5 skipped" in summary and standin.loaded == []  # nothing to do: model not loaded


def test_caption_folder_cancel_keeps_what_was_written(comfy, linear_checkpoint, tmp_path):
    from comfy_standin import InterruptProcessingException

    standin, pack = comfy
    model = _model(standin, pack, linear_checkpoint)
    paths = _images(tmp_path / "set", 6)
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    inputs = {**_defaults(node, skip=("jtp_model",)), "folder": str(tmp_path / "set"), "batch_size": 2}
    standin.interrupt_after = 1
    with pytest.raises(InterruptProcessingException):
        node().caption(jtp_model=model, **inputs)
    assert [path.with_suffix(".txt").exists() for path in paths] == [True, True, False, False, False, False]
    standin.interrupt_after = None
    (summary,) = node().caption(jtp_model=model, **inputs)["result"]
    assert "resuming: 2 of 6 done, 4 left" in summary and "4 captioned, 2 done earlier in this job" in summary


def test_caption_folder_cancelled_overwrite_resumes_when_queued_again(comfy, linear_checkpoint, tmp_path):
    """#14 item 5: a cancelled overwrite run, queued again unchanged, overwrites exactly the captions it had not."""
    from comfy_standin import InterruptProcessingException

    standin, pack = comfy
    model = _model(standin, pack, linear_checkpoint)
    paths = _images(tmp_path / "set", 6)
    for path in paths:
        path.with_suffix(".txt").write_text("old caption")
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    inputs = {**_defaults(node, skip=("jtp_model",)), "folder": str(tmp_path / "set"), "batch_size": 2,
              "mode": "overwrite"}
    standin.interrupt_after = 1
    with pytest.raises(InterruptProcessingException):
        node().caption(jtp_model=model, **inputs)
    assert [path.with_suffix(".txt").read_text() == "old caption" for path in paths] == [False] * 2 + [True] * 4
    standin.interrupt_after = None
    (summary,) = node().caption(jtp_model=model, **inputs)["result"]
    assert "resuming: 2 of 6 done, 4 left" in summary and "4 captioned, 2 done earlier" in summary
    assert all(path.with_suffix(".txt").read_text() != "old caption" for path in paths)
    assert not (tmp_path / "set" / ".jtp-caption-job.jsonl").exists()  # complete: the record is gone


def test_caption_folder_relative_to_input_folder_and_bad_folder(comfy, linear_checkpoint, tmp_path, monkeypatch):
    standin, pack = comfy
    model = _model(standin, pack, linear_checkpoint)
    _images(tmp_path / "input" / "set", 1)
    monkeypatch.setattr(sys.modules["folder_paths"], "get_input_directory", lambda: str(tmp_path / "input"),
                        raising=False)
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    inputs = {**_defaults(node, skip=("jtp_model",)), "folder": "set"}
    node().caption(jtp_model=model, **inputs)
    assert (tmp_path / "input" / "set" / "0.txt").exists()
    with pytest.raises(_jtp_error(pack), match="folder"):
        node().caption(jtp_model=model, **{**inputs, "folder": ""})


def test_load_images_gives_a_list_of_sizes_masks_and_paths(comfy, tmp_path):
    _, pack = comfy
    paths = _images(tmp_path / "set", 3)
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:5, :, 3] = 0  # top half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "set" / "3.png")
    (tmp_path / "set" / "4.png").write_bytes(b"corrupt")
    node = pack.NODE_CLASS_MAPPINGS["JTPLoadImagesFromFolder"]
    assert node.OUTPUT_IS_LIST == (True, True, True)
    images, masks, names = node().load(folder=str(tmp_path / "set"), recursive=False, start=0, limit=0)
    assert names == [str(path) for path in paths] + [str(tmp_path / "set" / "3.png")]  # corrupt file skipped
    assert [tuple(image.shape) for image in images] == [(1, 30, 40, 3), (1, 60, 25, 3), (1, 50, 50, 3), (1, 10, 12, 3)]
    assert torch.equal(images[0][0], torch.from_numpy(np.asarray(Image.open(paths[0]), np.float32) / 255))
    assert masks[3][0, :5].eq(1).all() and masks[3][0, 5:].eq(0).all()  # 1 = transparent, as LoadImage
    assert masks[0].abs().sum() == 0
    _, _, some = node().load(folder=str(tmp_path / "set"), recursive=False, start=1, limit=2)
    assert some == names[1:3]
    fingerprint = node.IS_CHANGED(folder=str(tmp_path / "set"), recursive=False, start=0, limit=0)
    _images(tmp_path / "set" / "more", 1)
    assert node.IS_CHANGED(folder=str(tmp_path / "set"), recursive=False, start=0, limit=0) == fingerprint
    assert node.IS_CHANGED(folder=str(tmp_path / "set"), recursive=True, start=0, limit=0) != fingerprint


def test_load_tag_save_graph_matches_caption_folder(comfy, linear_checkpoint, tmp_path, tiny_tagger):
    standin, pack = comfy
    model = _model(standin, pack, linear_checkpoint)
    paths = _images(tmp_path / "set", 3)
    Image.fromarray(np.full((20, 20, 4), 128, np.uint8), "RGBA").save(tmp_path / "set" / "3.png")
    paths.append(tmp_path / "set" / "3.png")
    loader = pack.NODE_CLASS_MAPPINGS["JTPLoadImagesFromFolder"]()
    tagger = pack.NODE_CLASS_MAPPINGS["JTPTagger"]
    saver = pack.NODE_CLASS_MAPPINGS["JTPSaveCaptions"]
    images, masks, names = loader.load(folder=str(tmp_path / "set"), recursive=False, start=0, limit=0)
    widgets = _defaults(tagger, skip=("jtp_model", "image", "mask"))
    captions = []
    for image, mask in zip(images, masks, strict=True):  # ComfyUI calls a non-list node once per list item
        captions += tagger().tag(jtp_model=model, image=image, mask=mask, **widgets)["result"][0]
    (existing := tmp_path / "set" / "0.txt").write_text("hand written")
    out = saver().save(paths=names, captions=captions, mode=["skip"])
    assert "3 captioned, 1 skipped" in out["result"][0]
    assert existing.read_text() == "hand written"
    for path in paths[1:]:
        plain = tag_result(tiny_tagger.predict_pils([open_image(path)])[0], tiny_tagger.tags, TagOptions()).text
        assert path.with_suffix(".txt").read_text() == plain  # same caption as the folder pipeline gives

    saver().save(paths=names[:1], captions=["blue eyes, hand written"], mode=["append"], separator=[", "])
    assert existing.read_text() == "hand written, blue eyes"
    with pytest.raises(_jtp_error(pack), match="pair up"):
        saver().save(paths=names, captions=captions[:2], mode=["overwrite"])


def test_nodes_that_write_files_are_never_served_from_comfyuis_cache(comfy):
    # ComfyUI reuses a node's last result while IS_CHANGED returns an equal value; NaN never equals itself,
    # so deleting captions and queueing the same graph again writes them again
    _, pack = comfy
    for name in ("JTPCaptionFolder", "JTPSaveCaptions"):
        value = pack.NODE_CLASS_MAPPINGS[name].IS_CHANGED(folder="x", mode="skip")
        assert value != value, name
