"""The JTP Tagger tab and settings, built by the real script under the WebUI stand-in with a stand-in Gradio.

The stand-in records components and event handlers, so the tests press the tab's buttons by calling the
handlers the way Gradio would. tests/test_webui_gradio.py builds the same tab under the real Gradio when
it is installed.
"""

import shutil

import numpy as np
import pytest
from PIL import Image
from webui_standin import WebUI

from jtp_core import KNOWN_MODELS, TagOptions, tag_result


@pytest.fixture
def webui(request, tmp_path, linear_checkpoint):
    version = getattr(request, "param", "3.41.2")
    standin = WebUI(tmp_path / "webui", gradio_version=version)
    shutil.copytree(linear_checkpoint, standin.models_path / "jtp" / "TINY_PILOT")
    standin.opts.data.update(jtp_default_model="TINY_PILOT", jtp_download=False)
    standin.install()
    try:
        script = standin.load_script()
        boxes, tabs = standin.build_ui()
        yield standin, script, boxes, tabs
    finally:
        standin.uninstall()


def image(seed=0, size=(50, 30)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    return Image.fromarray(pixels, "RGBA")


def click(button, index=0):
    return button.events[index]


def press(button, values: dict, index=0):
    """Call a button's handler with its inputs' current values, overridden by ``values`` (by elem_id/label)."""
    event = click(button, index)
    args = [values.get(component.kwargs.get("elem_id") or component.kwargs.get("label"), component.kwargs.get("value"))
            for component in event.inputs]
    return event.fn(*args)


def test_tab_is_registered_with_its_parts(webui):
    _, _, _, tabs = webui
    ((blocks, title, elem_id),) = tabs
    assert (title, elem_id) == ("JTP Tagger", "jtp_tagger")
    model = blocks.find("jtp_model")
    assert model.kwargs["choices"] == [*KNOWN_MODELS, "TINY_PILOT"]
    assert model.kwargs["value"] == "TINY_PILOT"  # the default model from the settings
    image_input = blocks.find("jtp_image")
    assert image_input.kwargs["type"] == "pil" and image_input.kwargs["image_mode"] == "RGBA"  # keeps alpha
    for part in ("jtp_tags", "jtp_scores", "jtp_unload", "jtp_folder", "jtp_caption", "jtp_stop", "jtp_summary"):
        blocks.find(part)
    # only keyword arguments both Gradio 3.41 and 4.x accept (no source=/sources=, no .style())
    assert all("source" not in item.kwargs and "sources" not in item.kwargs for item in blocks.walk())


def test_tag_button_gives_tags_and_score_table(webui, tiny_tagger):
    _, _, _, tabs = webui
    blocks = tabs[0][0]
    picture = image(1)
    text, table, status = press(blocks.find("jtp_tag"), {"jtp_image": picture, "jtp_threshold": 0.1})
    want = tag_result(tiny_tagger.predict_pils([picture])[0], tiny_tagger.tags, TagOptions(threshold=0.1))
    assert text == want.text and text
    assert table["headers"] == ["tag", "score"]
    rows = table["data"]
    assert rows == [[tag, score] for tag, score in want.scores.items()]
    assert [score for _, score in rows] == sorted((score for _, score in rows), reverse=True)
    assert "TINY_PILOT" in status and "cpu" in status


def test_tag_without_an_image_shows_a_message(webui):
    standin, _, _, tabs = webui
    with pytest.raises(standin.gr.Error, match="Load an image"):
        press(tabs[0][0].find("jtp_tag"), {"jtp_image": None})


@pytest.mark.parametrize(("webui", "keyword"), [("3.41.2", "_js"), ("4.40.0", "js")], indirect=["webui"])
def test_send_buttons_fill_the_prompt_and_switch_tab(webui, keyword):
    _, _, boxes, tabs = webui
    blocks = tabs[0][0]
    for target in ("txt2img", "img2img"):
        button = blocks.find(f"jtp_send_{target}")
        copy, switch = button.events
        assert copy.inputs == [blocks.find("jtp_tags")] and copy.outputs == [boxes[f"{target}_prompt"]]
        assert copy.fn("(anthro:0.93), (female:0.90), (solo:0.80)") == "(anthro:0.93), (female:0.90), (solo:0.80)"
        assert switch.fn is None and switch.kwargs == {keyword: f"switch_to_{target}"}


def test_no_send_buttons_when_the_prompt_boxes_were_not_seen(tmp_path, linear_checkpoint):
    standin = WebUI(tmp_path / "webui")
    standin.install()
    try:
        standin.load_script()
        _, tabs = standin.build_ui(prompt_ids=())
        assert not tabs[0][0].buttons("Send to txt2img")  # the tab still builds
    finally:
        standin.uninstall()


def test_unload_button(webui):
    _, script, _, tabs = webui
    blocks = tabs[0][0]
    assert press(blocks.find("jtp_unload"), {}) == "No model was loaded."
    press(blocks.find("jtp_tag"), {"jtp_image": image(2)})
    assert script.service.loaded()["model"] == "TINY_PILOT"
    assert press(blocks.find("jtp_unload"), {}) == "Model unloaded."
    assert script.service.loaded() is None


def dataset(folder, count=5):
    folder.mkdir(parents=True)
    for index in range(count):
        image(index).save(folder / f"img{index}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_caption_folder_with_progress(webui, tmp_path, tiny_tagger):
    standin, _, _, tabs = webui
    blocks = tabs[0][0]
    folder = dataset(tmp_path / "data")
    (folder / "img0.txt").write_text("kept as is")
    progress = standin.gr.Progress()
    event = click(blocks.find("jtp_caption"))
    values = {"jtp_folder": str(folder), "jtp_threshold": 0.1, "Existing captions": "skip"}
    args = [values.get(c.kwargs.get("elem_id") or c.kwargs.get("label"), c.kwargs.get("value")) for c in event.inputs]
    summary = event.fn(*args, progress=progress)
    assert "4 captioned, 1 skipped" in summary and "1 failed" in summary and "broken.png" in summary
    assert (folder / "img0.txt").read_text() == "kept as is"
    want = tag_result(tiny_tagger.predict_pils([Image.open(folder / "img3.png")])[0], tiny_tagger.tags,
                      TagOptions(threshold=0.1))
    assert (folder / "img3.txt").read_text(encoding="utf-8").strip() == want.text
    assert progress.calls and progress.calls[-1][0] == (5, 5)  # 4 images + the broken one, all accounted for


def test_caption_stop_keeps_what_is_done(webui, tmp_path):
    standin, script, _, tabs = webui
    blocks = tabs[0][0]
    folder = dataset(tmp_path / "data", count=6)
    standin.opts.data["jtp_batch_size"] = 2
    stop = click(blocks.find("jtp_stop"))

    class StopAfterFirstBatch:
        def __call__(self, value, desc=None):
            stop.fn()  # the user presses Stop while the first batch is reported

    event = click(blocks.find("jtp_caption"))
    values = {"jtp_folder": str(folder)}
    args = [values.get(c.kwargs.get("elem_id") or c.kwargs.get("label"), c.kwargs.get("value")) for c in event.inputs]
    summary = event.fn(*args, progress=StopAfterFirstBatch())
    assert summary.startswith("Stopped after 3 of 7 images")  # broken.png (failed) and the first batch of 2
    written = sorted(path.name for path in folder.glob("*.txt"))
    assert written == ["img0.txt", "img1.txt"]  # the first batch's captions are complete; nothing else written


def test_caption_errors_are_shown(webui, tmp_path):
    standin, _, _, tabs = webui
    event = click(tabs[0][0].find("jtp_caption"))
    for folder, message in (("", "Give the folder"), (str(tmp_path / "missing"), "No such folder")):
        values = {"jtp_folder": folder}
        args = [values.get(c.kwargs.get("elem_id") or c.kwargs.get("label"), c.kwargs.get("value"))
                for c in event.inputs]
        with pytest.raises(standin.gr.Error, match=message):
            event.fn(*args, progress=standin.gr.Progress())


def test_settings_are_registered_in_their_section(webui):
    standin, script, _, _ = webui
    labels = standin.opts.data_labels
    assert {"jtp_models_dir", "jtp_default_model", "jtp_device", "jtp_threshold", "jtp_keep_loaded"} <= set(labels)
    assert all(info.section == ("jtp", "JTP Tagger") for info in labels.values())
    model_choices = labels["jtp_default_model"].component_args()  # refreshed each time the settings are shown
    assert "TINY_PILOT" in model_choices["choices"]
    assert labels["jtp_device"].component is standin.gr.Radio


def test_keep_loaded_off_frees_the_model_after_each_use(webui):
    standin, script, _, tabs = webui
    standin.opts.data["jtp_keep_loaded"] = False
    press(tabs[0][0].find("jtp_tag"), {"jtp_image": image(3)})
    assert script.service.loaded() is None


def test_models_dir_setting_is_searched_first(webui, tmp_path, linear_checkpoint):
    standin, script, _, _ = webui
    extra = tmp_path / "elsewhere"
    shutil.copytree(linear_checkpoint, extra / "OTHER_MODEL")
    standin.opts.data["jtp_models_dir"] = str(extra)
    assert "OTHER_MODEL" in script.service.model_names()
    assert script.service.models()["models_dir"] == str(extra)  # downloads go there


def test_the_stand_in_gradio_refuses_what_one_of_the_hosts_gradios_refuses():
    from webui_standin import fake_gradio

    gr3, gr4 = fake_gradio("3.41.2"), fake_gradio("4.40.0")
    with pytest.raises(TypeError, match="source"):
        gr3.Image(source="upload")  # Gradio 3 only
    with pytest.raises(TypeError, match="sources"):
        gr4.Image(sources=["upload"])  # Gradio 4 only
    gr3.Button("x").click(fn=None, _js="switch_to_txt2img")
    with pytest.raises(TypeError, match="_js"):
        gr4.Button("x").click(fn=None, _js="switch_to_txt2img")  # plain Gradio 4 wants js=


def test_tab_calibration_box_reaches_the_tag_options(webui):
    from jtp_webui.ui import options_from_widgets

    _, _, _, tabs = webui
    ((blocks, _, _),) = tabs
    assert blocks.find("jtp_calibration").kwargs["value"] == "auto"
    widgets = (0.3, 10, "", "", True, True, False, "score", ", ")
    assert options_from_widgets(*widgets, "0.8").calibration == 0.8  # a slider position typed in
    assert options_from_widgets(*widgets, "off").calibration == "off"
    with pytest.raises(ValueError, match="metric"):
        options_from_widgets(*widgets, "precision please")
