"""The example workflow stays loadable and runnable as the nodes change.

ComfyUI fills a node's widgets from ``widgets_values`` by position, so a workflow written for an older widget
order silently gets wrong settings (or fails validation). These tests read the shipped workflow against the
nodes' INPUT_TYPES and run its pack nodes with its own widget values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from checkpoints import write_checkpoint

WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / "example_workflows").glob("*.json"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
# Core nodes the examples may use, with their output types (ComfyUI itself is not importable in the tests).
CORE_OUTPUTS = {
    "LoadImage": ["IMAGE", "MASK"], "RepeatImageBatch": ["IMAGE"],
    "PreviewAny": [], "PreviewImage": [], "MaskPreview": [], "Note": [], "SaveImage": [],
    "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "CLIPTextEncode": ["CONDITIONING"],
    "EmptyLatentImage": ["LATENT"], "KSampler": ["LATENT"], "VAEDecode": ["IMAGE"],
}


def _widget_specs(node_class) -> list[tuple[str, object, dict]]:
    """(name, type, options) of each widget, in the order the frontend creates them."""
    spec = node_class.INPUT_TYPES()
    inputs = {**spec.get("required", {}), **spec.get("optional", {})}
    return [
        (name, kind, opts) for name, (kind, opts) in inputs.items()
        if (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput")  # forceInput: a socket
    ]


def _check_value(name: str, kind, opts: dict, value) -> None:
    if isinstance(kind, list):
        assert value in kind, f"{name}: {value!r} is not one of {kind}"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{name}: {value!r} is not a boolean"
    elif kind == "STRING":
        assert isinstance(value, str), f"{name}: {value!r} is not a string"
    else:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{name}: {value!r} is not a number"
        assert kind != "INT" or float(value).is_integer(), f"{name}: {value!r} is not an integer"
        assert opts.get("min", value) <= value <= opts.get("max", value), f"{name}: {value!r} out of range"


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_is_an_example_workflow():
    assert any(path.name == "jtp_tag_image.json" for path in WORKFLOWS)


def test_every_node_has_an_example_workflow(comfy):
    _, pack = comfy
    shown = {node["type"] for path in WORKFLOWS for node in _load(path)["nodes"]}
    assert set(pack.NODE_CLASS_MAPPINGS) - shown == set()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_widget_values_follow_input_types_order(comfy, path):
    _, pack = comfy
    for node in _load(path)["nodes"]:
        node_class = pack.NODE_CLASS_MAPPINGS.get(node["type"])
        if node_class is None:
            assert node["type"] in CORE_OUTPUTS, f"{path.name}: unknown node type {node['type']}"
            continue
        specs = _widget_specs(node_class)
        values = node.get("widgets_values", [])
        assert len(values) == len(specs), f"{node['type']}: {len(values)} values for {len(specs)} widgets"
        for (name, kind, opts), value in zip(specs, values, strict=True):
            _check_value(f"{node['type']}.{name}", kind, opts, value)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_links_join_matching_types(comfy, path):
    _, pack = comfy
    workflow = _load(path)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        source_type = nodes[origin]["type"]
        if source_type in pack.NODE_CLASS_MAPPINGS:
            outputs = list(pack.NODE_CLASS_MAPPINGS[source_type].RETURN_TYPES)
        else:
            outputs = CORE_OUTPUTS[source_type]
        assert outputs[origin_slot] == kind, f"link {link_id}: {source_type} output {origin_slot} is not {kind}"
        slot = nodes[target]["inputs"][target_slot]
        assert slot["link"] == link_id and slot["type"] in (kind, "*"), f"link {link_id} ends at the wrong slot"
        target_class = pack.NODE_CLASS_MAPPINGS.get(nodes[target]["type"])
        if target_class is not None:
            spec = target_class.INPUT_TYPES()
            declared = {**spec.get("required", {}), **spec.get("optional", {})}
            assert declared[slot["name"]][0] == kind, f"link {link_id}: {slot['name']} does not take {kind}"


def test_tagger_alone_ends_a_graph(comfy):
    # the tags show on the node itself, so Load Image -> loader -> tagger must be a complete prompt
    _, pack = comfy
    assert pack.NODE_CLASS_MAPPINGS["JTPTagger"].OUTPUT_NODE is True


def test_example_runs_with_its_own_settings_on_an_official_layout_checkpoint(comfy):
    standin, pack = comfy
    write_checkpoint(
        standin.models_dir / "jtp" / "JTP_PILOT", "linear", 16,
        weights_name="JTP_PILOT-e4-vit_so400m_patch14_siglip_384.safetensors",
    )
    nodes = {node["type"]: node for node in _load(WORKFLOWS[0].parent / "jtp_tag_image.json")["nodes"]}

    def kwargs(node_type: str) -> dict:
        specs = _widget_specs(pack.NODE_CLASS_MAPPINGS[node_type])
        return {name: value for (name, _, _), value in zip(specs, nodes[node_type]["widgets_values"], strict=True)}

    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load(**kwargs("JTPModelLoader"))
    image, mask = torch.rand(2, 48, 64, 3), torch.zeros(64, 64)  # LoadImage's MASK for an image without alpha
    out = pack.NODE_CLASS_MAPPINGS["JTPTagger"]().tag(jtp_model=model, image=image, mask=mask, **kwargs("JTPTagger"))
    texts, scores = out["result"]
    assert out["ui"]["text"] == texts and len(texts) == len(scores) == 2
    assert all(text and ", " in text for text in texts)  # the default separator, tags above 0.2
