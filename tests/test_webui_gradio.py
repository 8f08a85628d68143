"""The tab under the real Gradio, when it is installed (skipped otherwise; the WebUI brings its own Gradio).

Run it against both hosts' versions by putting one on the path, e.g. ``pip install --target /tmp/gr3
gradio==3.41.2`` then ``PYTHONPATH=/tmp/gr3 pytest tests/test_webui_gradio.py`` (and 4.40.0 for Forge).
"""

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from jtp_webui import ui  # noqa: E402
from jtp_webui.service import ServiceConfig, TaggerService  # noqa: E402

MAJOR = int(gr.__version__.split(".")[0])


@pytest.fixture
def service(linear_checkpoint):
    config = ServiceConfig(models_dirs=(linear_checkpoint.parent,), default_model="TINY_PILOT", device="cpu")
    return TaggerService(lambda: config)


def build(service):
    with gr.Blocks() as txt2img:
        prompt = gr.Textbox(elem_id="txt2img_prompt")
    tab = ui.build_tab(gr, service, {"txt2img": prompt})
    with gr.Blocks() as demo:  # the WebUI renders each interface into one demo, as here
        with gr.Tab("txt2img"):
            txt2img.render()
        with gr.Tab("JTP Tagger"):
            tab.render()
    return demo, tab


def test_tab_builds_and_serializes(service):
    demo, _ = build(service)
    config = demo.get_config_file()
    elem_ids = {item.get("props", {}).get("elem_id") for item in config["components"]}
    assert {"jtp_image", "jtp_model", "jtp_tags", "jtp_scores", "jtp_caption", "jtp_send_txt2img"} <= elem_ids
    scripts = [dep.get("js") for dep in config["dependencies"]]
    assert "switch_to_txt2img" in scripts  # the tab switch reached Gradio under its version's keyword


def test_components_turn_handler_results_into_values(service):
    _, tab = build(service)
    by_id = {block.elem_id: block for block in tab.blocks.values() if getattr(block, "elem_id", None)}
    actions = ui.TabActions(service)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA")
    text, rows, _ = actions.tag(picture, "TINY_PILOT", 0.0, 3, "", "", True, True, False, "score", ", ")
    table = by_id["jtp_scores"].postprocess(rows)
    data = table["data"] if isinstance(table, dict) else table.data
    assert [row[0] for row in data] == [row[0] for row in rows] and len(data) == 3
    assert by_id["jtp_tags"].postprocess(text) == text
    empty = by_id["jtp_scores"].postprocess([])  # nothing above the threshold must not break the table
    assert empty is not None


def test_image_input_keeps_transparency(service):
    _, tab = build(service)
    image = next(block for block in tab.blocks.values() if getattr(block, "elem_id", None) == "jtp_image")
    assert image.image_mode == "RGBA" and image.type == "pil"
