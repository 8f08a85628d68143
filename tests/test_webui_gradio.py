"""The tab under the real Gradio of each host: A1111 1.10 pins gradio 3.41.2, Forge gradio 4.40.0.

The main venv has no Gradio (the WebUI brings its own, with pins that clash with the rest of the test
environment), so `.ci/setup` installs each host's Gradio with the host's pins into its own folder
(.venv-gradio3 / .venv-gradio4) and `.ci/run` runs this file with that folder in front on PYTHONPATH and
``JTP_GRADIO`` naming the version: then a missing or different Gradio fails instead of skipping.
By hand: ``JTP_GRADIO=3.41.2 PYTHONPATH=.venv-gradio3 .venv/bin/python -m pytest tests/test_webui_gradio.py``.
"""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

WANTED = os.environ.get("JTP_GRADIO")
if WANTED:
    import gradio as gr
else:
    gr = pytest.importorskip("gradio")

from jtp_webui import ui  # noqa: E402
from jtp_webui.service import ServiceConfig, TaggerService  # noqa: E402

MAJOR = int(gr.__version__.split(".")[0])


def test_the_gradio_asked_for():
    assert WANTED is None or gr.__version__ == WANTED


@pytest.fixture
def service(linear_checkpoint):
    config = ServiceConfig(models_dirs=(linear_checkpoint.parent,), default_model="TINY_PILOT", device="cpu")
    return TaggerService(lambda: config)


def build(service):
    with gr.Blocks() as txt2img:
        prompt = gr.Textbox(elem_id="txt2img_prompt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tab = ui.build_tab(gr, service, {"txt2img": prompt})
    # Gradio 3 takes unknown or outdated component arguments with a warning only (GradioUnusedKwargWarning,
    # GradioDeprecationWarning: UserWarnings); Gradio 4 raises TypeError. Neither may pass unseen.
    complaints = [str(item.message) for item in caught if issubclass(item.category, UserWarning)]
    assert not complaints, complaints
    with gr.Blocks() as demo:  # the WebUI renders each interface into one demo, as here
        with gr.Tab("txt2img"):
            txt2img.render()
        with gr.Tab("JTP Tagger"):
            tab.render()
    return demo, tab


def by_elem_id(tab):
    return {block.elem_id: block for block in tab.blocks.values() if getattr(block, "elem_id", None)}


def table_value(table):
    """A Dataframe's postprocessed value as (headers, data) in Gradio 3 (a dict) and 4 (a model)."""
    if isinstance(table, dict):
        return table["headers"], table["data"]
    return table.headers, table.data


def test_tab_builds_and_serializes(service):
    demo, _ = build(service)
    config = demo.get_config_file()
    props = {item.get("props", {}).get("elem_id"): item.get("props", {}) for item in config["components"]}
    assert {"jtp_image", "jtp_model", "jtp_tags", "jtp_scores", "jtp_caption", "jtp_send_txt2img"} <= set(props)
    scripts = [dep.get("js") for dep in config["dependencies"]]
    assert "switch_to_txt2img" in scripts  # the tab switch reached Gradio under its version's keyword
    # before the first run the Scores table is empty, with its headers: no blank ("", 0) row
    assert table_value(props["jtp_scores"]["value"]) == (["tag", "score"], [])
    assert props["jtp_model"]["value"] == "TINY_PILOT"


def test_components_turn_handler_results_into_values(service):
    _, tab = build(service)
    blocks = by_elem_id(tab)
    actions = ui.TabActions(service)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA")
    text, table, _ = actions.tag(picture, "TINY_PILOT", 0.0, 3, "", "", True, True, False, "score", ", ")
    headers, data = table_value(blocks["jtp_scores"].postprocess(table))
    assert headers == ["tag", "score"] and len(data) == 3
    assert [row[0] for row in data] == [row[0] for row in table["data"]]
    assert blocks["jtp_tags"].postprocess(text) == text
    # nothing above the threshold: an empty table with its headers, not one blank row
    _, empty, _ = actions.tag(picture, "TINY_PILOT", 1.0, 0, "", "", True, True, False, "score", ", ")
    assert table_value(blocks["jtp_scores"].postprocess(empty)) == (["tag", "score"], [])


def test_image_input_keeps_transparency(service):
    _, tab = build(service)
    image = by_elem_id(tab)["jtp_image"]
    assert image.image_mode == "RGBA" and image.type == "pil"
