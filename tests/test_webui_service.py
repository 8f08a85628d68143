"""The WebUI-independent service: image decoding, the one-model slot, and reading the settings."""

import base64
import dataclasses
import io
import shutil

import pytest
from PIL import Image

from jtp_core import TagOptions, load_tagger
from jtp_core.inference.devices import DEVICES, PRECISIONS
from jtp_webui import settings
from jtp_webui.service import _OPTION_CHECKS, OPTION_FIELDS, RequestError, ServiceConfig, TaggerService, decode_image


def encoded(fmt="PNG", mode="RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (9, 7), (10, 200, 30, 128)[: len(mode)]).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(encoded()).decode(),
        base64.encodebytes(encoded()).decode(),  # wrapped at 76 columns, as many tools write it
        base64.urlsafe_b64encode(encoded()).decode().rstrip("="),  # URL-safe alphabet, padding dropped
        "data:image/png;base64," + base64.b64encode(encoded()).decode(),
        "data:image/jpeg;base64," + base64.b64encode(encoded("JPEG", "RGB")).decode(),
        "  " + base64.b64encode(encoded("WEBP")).decode() + "\n",
    ],
)
def test_decode_image_accepts_what_clients_send(text):
    image = decode_image(text)
    assert image.size == (9, 7)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("data:image/png,rawbytes", "must be base64"),
        ("abc$", "not valid base64"),
        (base64.b64encode(encoded()[:40]).decode(), "not a readable image"),
        (base64.b64encode(b"GIF89a" + b"\0" * 20).decode(), "not a readable image"),
        ("   ", "non-empty string"),
    ],
)
def test_decode_image_rejects_with_a_4xx(text, words):
    with pytest.raises(RequestError) as caught:
        decode_image(text, "images[3]")
    assert caught.value.status == 400 and words in caught.value.message and "images[3]" in caught.value.message


def test_api_options_are_tag_options_with_checks():
    plain = {"threshold", "max_tags", "exclude", "trigger_words", "replace_underscores", "escape_parentheses",
             "weighted", "order", "separator", "calibration", "implications"}
    assert set(_OPTION_CHECKS) == set(OPTION_FIELDS) == plain
    assert plain <= {field.name for field in dataclasses.fields(TagOptions)}


@pytest.fixture
def models(tmp_path, linear_checkpoint, gated_checkpoint):
    shutil.copytree(linear_checkpoint, tmp_path / "A")
    shutil.copytree(gated_checkpoint, tmp_path / "B")
    return tmp_path


def test_one_model_in_memory_swapped_on_change(models):
    config = ServiceConfig(models_dirs=(models,), default_model="A", device="cpu")
    loads = []

    def loader(name, **kwargs):
        loads.append(name)
        return load_tagger(name, **kwargs)

    service = TaggerService(lambda: config, loader=loader)
    picture = Image.new("RGB", (20, 20), "red")
    first = service.tag_images([picture])[1][0]
    assert service.tag_images([picture])[1][0] == first and loads == ["A"]  # reused, not reloaded
    service.tag_images([picture], model="B")
    assert loads == ["A", "B"] and service.loaded()["model"] == "B"  # replaced, not stacked
    config = dataclasses.replace(config, precision="fp32")  # a changed setting gives a new key
    service.tag_images([picture], model="B")
    assert loads == ["A", "B", "B"] and service.loaded()["precision"] == "fp32"


def test_caption_of_a_finished_folder_loads_no_model(models, tmp_path):
    from jtp_core.captioning.caption import CaptionRequest

    folder = tmp_path / "done"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    (folder / "a.txt").write_text("already captioned")
    config = ServiceConfig(models_dirs=(models,), default_model="A", device="cpu")
    service = TaggerService(lambda: config, loader=lambda *a, **k: pytest.fail("no model needed"))
    summary = service.caption(CaptionRequest(inputs=[folder]))
    assert (summary.tagged, summary.skipped) == (0, 1)


def test_settings_read_back_with_fallbacks(tmp_path):
    stored = {"jtp_threshold": "0.35", "jtp_max_tags": "abc", "jtp_device": "gpu9", "jtp_precision": "fp16",
              "jtp_exclude": "watermark, *_text", "jtp_batch_size": 8, "jtp_keep_loaded": "yes", "jtp_models_dir": ""}
    host = settings.HostSettings.read(lambda key, default: stored.get(key, default))
    config = settings.service_config(host, tmp_path / "models" / "jtp")
    assert config.options.threshold == 0.35 and config.options.max_tags == 250  # "abc" → the default
    assert config.options.exclude == ("watermark", "*_text")
    assert config.device == "auto" and config.precision == "fp16" and config.batch_size == 8
    assert config.keep_loaded is True and config.models_dirs == (tmp_path / "models" / "jtp",)
    assert {s.args for s in settings.SETTINGS if s.kind == "radio"} == {DEVICES, PRECISIONS}


def imported_modules(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_webui_side_imports_no_comfyui_and_core_side_no_webui():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    comfy = {"comfy", "folder_paths", "nodes", "comfy_api", "server", "execution"}
    for path in [*root.joinpath("scripts").glob("*.py"), *root.joinpath("jtp_webui").glob("*.py")]:
        assert not imported_modules(path) & comfy, f"{path.name} imports ComfyUI"
    for path in [*root.joinpath("jtp_webui").glob("*.py"), *root.joinpath("jtp_core").glob("*.py")]:
        assert not imported_modules(path) & {"modules", "launch", "gradio"}, f"{path.name} imports the WebUI"
