"""POST /jtp/tag (right-click "Tag with JTP"): request checks, JSON errors, alpha as MASK, the shared model."""

from __future__ import annotations

import asyncio
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def route(comfy, tmp_path, monkeypatch):
    """(standin, pack, routes module, input dir) with folder_paths' image-folder functions of a real ComfyUI."""
    import sys

    standin, pack = comfy
    dirs = {kind: tmp_path / kind for kind in ("input", "output", "temp")}
    for folder in dirs.values():
        folder.mkdir()
    folder_paths = sys.modules["folder_paths"]

    def annotated_filepath(name):
        for kind in dirs:
            if name.endswith(f" [{kind}]"):
                return name[: -len(kind) - 3], str(dirs[kind])
        return name, None

    monkeypatch.setattr(folder_paths, "annotated_filepath", annotated_filepath, raising=False)
    monkeypatch.setattr(folder_paths, "get_directory_by_type", lambda kind: str(dirs[kind]) if kind in dirs else None,
                        raising=False)
    routes = pack.nodes.routes
    yield standin, pack, routes, dirs["input"]
    pack.nodes.shared_model.clear()


def call(routes, body, **kwargs) -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asyncio.run(routes.handle_tag_request(raw, **kwargs))


def _install(standin, checkpoint, name="TINY_PILOT") -> str:
    shutil.copytree(checkpoint, standin.models_dir / "jtp" / name)
    return name


TINY = {"model": "TINY_PILOT", "device": "cpu", "precision": "fp32"}


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "must be JSON"),
    (b"[1, 2]", "JSON object"),
    ({}, "'filename'"),
    ({"filename": "  "}, "'filename'"),
    ({"filename": 3}, "'filename'"),
    ({"filename": "a.png", "type": "models"}, "'type' must be one of"),
    ({"filename": "a.png", "subfolder": 5}, "'subfolder' must be a string"),
    ({"filename": "../secret.png"}, "bad filename"),
    ({"filename": "/etc/passwd"}, "bad filename"),
    ({"filename": "a.png", "subfolder": "../../"}, "bad subfolder"),
])
def test_bad_requests_get_400_with_a_message(route, body, fragment):
    _, _, routes, input_dir = route
    Image.new("RGB", (8, 8)).save(input_dir / "a.png")
    status, reply = call(routes, body)
    assert status == 400 and fragment in reply["error"]


def test_bad_model_and_threshold_get_400(route, linear_checkpoint):
    standin, _, routes, input_dir = route
    _install(standin, linear_checkpoint)
    Image.new("RGB", (8, 8)).save(input_dir / "a.png")
    status, reply = call(routes, {"filename": "a.png", "model": {"model": "/etc"}})
    assert status == 400 and "model.model" in reply["error"]  # only the loader's own choices, never a path
    status, reply = call(routes, {"filename": "a.png", "model": {"model": "TINY_PILOT", "device": "tpu9"}})
    assert status == 400 and "model.device" in reply["error"]
    status, reply = call(routes, {"filename": "a.png", "model": "TINY_PILOT"})
    assert status == 400 and "'model' must be an object" in reply["error"]
    status, reply = call(routes, {"filename": "a.png", "model": TINY, "threshold": 2})
    assert status == 400 and "'threshold'" in reply["error"]
    status, reply = call(routes, {"filename": "a.png", "model": TINY, "calibration": "precise please"})
    assert status == 400 and "'calibration'" in reply["error"]
    # a metric asked of a JTP-1 model (no validation data): a clear 400 once the model is known
    status, reply = call(routes, {"filename": "a.png", "model": TINY, "calibration": "f2.0"})
    assert status == 400 and "validation data" in reply["error"]


def test_unknown_image_is_404(route):
    _, _, routes, _ = route
    status, reply = call(routes, {"filename": "missing.png", "subfolder": "sub", "type": "output"})
    assert status == 404 and "missing.png" in reply["error"] and "output" in reply["error"]


def test_model_not_on_disk_is_a_clear_404_without_download(route):
    standin, _, routes, input_dir = route
    Image.new("RGB", (8, 8)).save(input_dir / "a.png")
    status, reply = call(routes, {"filename": "a.png"})  # default model, never downloaded here
    assert status == 404 and "JTP_PILOT is not downloaded" in reply["error"] and "JTP Model Loader" in reply["error"]
    assert not (standin.models_dir / "jtp" / "JTP_PILOT").exists()


def test_unreadable_image_is_422_and_the_server_goes_on(route, linear_checkpoint):
    standin, _, routes, input_dir = route
    _install(standin, linear_checkpoint)
    (input_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    status, reply = call(routes, {"filename": "broken.png", "model": TINY})
    assert status == 422 and "broken.png" in reply["error"]
    Image.new("RGB", (8, 8)).save(input_dir / "ok.png")
    assert call(routes, {"filename": "ok.png", "model": TINY})[0] == 200


def test_tags_an_rgba_image_with_alpha_as_mask(route, linear_checkpoint, tiny_tagger):
    standin, _, routes, input_dir = route
    _install(standin, linear_checkpoint)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    pixels[:10, :, 3] = 0  # a transparent band
    (input_dir / "sub").mkdir()
    Image.fromarray(pixels, "RGBA").save(input_dir / "sub" / "rgba.png")

    status, reply = call(routes, {"filename": "rgba.png", "subfolder": "sub", "type": "input", "model": TINY,
                                  "threshold": 0.0})
    assert status == 200, reply
    image = torch.from_numpy(pixels[..., :3].astype(np.float32) / 255)[None]
    mask = 1 - torch.from_numpy(pixels[..., 3].astype(np.float32) / 255)[None]  # LoadImage's MASK
    expected = tiny_tagger.predict_image_tensor(image, mask)[0]
    order = torch.argsort(expected, descending=True).tolist()
    assert [row[0] for row in reply["tags"]] == [tiny_tagger.tags[i] for i in order]
    assert [row[1] for row in reply["tags"]] == pytest.approx([float(expected[i]) for i in order], abs=1e-4)
    assert all(row[2] is None for row in reply["tags"])  # PILOT's files carry no categories
    without_alpha = tiny_tagger.predict_image_tensor(image)[0]
    assert not torch.allclose(expected, without_alpha, atol=1e-4)  # the mask did change what the model saw
    assert reply["text"].count(", ") == len(tiny_tagger.tags) - 1 and reply["model"] == "TINY_PILOT"


def test_shares_the_loader_nodes_model(route, linear_checkpoint):
    standin, pack, routes, input_dir = route
    _install(standin, linear_checkpoint)
    Image.new("RGB", (16, 16), "red").save(input_dir / "a.png")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    status, _ = call(routes, {"filename": "a.png"})  # no model given: the one the graph used last
    assert status == 200
    assert standin.loaded == [model.patcher]  # the same model, put on its device by ComfyUI
    (again,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    assert again is model
    # the frontend sends the graph's loader widgets: the same inputs find the same copy
    widgets = {name: options.get("default") for section in pack.NODE_CLASS_MAPPINGS["JTPModelLoader"].INPUT_TYPES()
               .values() for name, (_, options) in section.items()}
    pack.nodes.shared_model._last_inputs = None
    status, _ = call(routes, {"filename": "a.png", "model": {**widgets, **TINY}})
    assert status == 200 and standin.loaded == [model.patcher, model.patcher]


def test_waits_for_the_queue_then_gives_up_with_409(route, linear_checkpoint):
    standin, _, routes, input_dir = route
    _install(standin, linear_checkpoint)
    Image.new("RGB", (8, 8)).save(input_dir / "a.png")
    status, reply = call(routes, {"filename": "a.png", "model": TINY}, queue_busy=lambda: True, wait_s=0.3)
    assert status == 409 and "queue" in reply["error"]
    assert standin.loaded == []  # nothing ran
    states = iter([True, True, False])
    status, _ = call(routes, {"filename": "a.png", "model": TINY}, queue_busy=lambda: next(states), wait_s=5)
    assert status == 200


def test_annotated_filename(route, linear_checkpoint):
    standin, _, routes, input_dir = route
    _install(standin, linear_checkpoint)
    output = input_dir.parent / "output"
    Image.new("RGB", (8, 8)).save(output / "made.png")
    status, reply = call(routes, {"filename": "made.png [output]", "model": TINY})
    assert status == 200 and reply["image"] == "made.png"


def test_no_route_without_comfyui_server(comfy):
    _, pack = comfy
    assert pack.nodes.routes.register() is False  # the stand-in has no server module: importing the pack is fine
