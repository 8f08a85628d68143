"""Write the example workflows that show the pack's other nodes, from the nodes' own INPUT_TYPES.

ComfyUI fills widgets from ``widgets_values`` by position, so these files are generated rather than typed:
after a node gains or reorders a widget, run ``python tools/make_example_workflows.py`` and commit the result
(tests/test_example_workflow.py checks every shipped workflow against INPUT_TYPES).
jtp_tag_image.json and jtp_tag_heatmap.json are hand-made and not touched here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}

# core nodes used here: (inputs [(name, type)], outputs [(name, type)])
CORE = {
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "PreviewAny": ([("source", "*")], []),
    "SaveImage": ([("images", "IMAGE")], []),
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "Note": ([], []),
}


class Workflow:
    def __init__(self, pack) -> None:
        self.pack = pack
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []

    def add(self, kind: str, pos: tuple[int, int], size: tuple[int, int] = (340, 200),
            widgets: dict[str, Any] | list[Any] | None = None, title: str | None = None) -> dict[str, Any]:
        node_class = self.pack.NODE_CLASS_MAPPINGS.get(kind)
        if node_class is not None:
            inputs, outputs, values = self._pack_node(node_class, widgets or {})
        else:
            core_inputs, core_outputs = CORE[kind]
            inputs = [{"name": name, "type": kind_, "link": None} for name, kind_ in core_inputs]
            outputs = [{"name": name, "type": kind_, "links": [], "slot_index": i}
                       for i, (name, kind_) in enumerate(core_outputs)]
            values = list(widgets or [])
        node = {
            "id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": list(size), "flags": {},
            "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": kind}, "widgets_values": values,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    @staticmethod
    def _pack_node(node_class, widgets: dict[str, Any]):
        spec = node_class.INPUT_TYPES()
        inputs, values = [], []
        for section in ("required", "optional"):
            for name, (kind, options) in spec.get(section, {}).items():
                is_widget = (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")
                if is_widget:
                    values.append(widgets.get(name, options.get("default", kind[0] if isinstance(kind, list) else "")))
                else:
                    slot = {"name": name, "type": kind, "link": None}
                    if section == "optional":
                        slot["shape"] = 7
                    inputs.append(slot)
        unknown = set(widgets) - {name for section in spec.values() for name in section}
        assert not unknown, f"{node_class.__name__} has no widget {unknown}"
        names = getattr(node_class, "RETURN_NAMES", node_class.RETURN_TYPES)
        is_list = getattr(node_class, "OUTPUT_IS_LIST", (False,) * len(names))
        outputs = []
        for i, (name, kind) in enumerate(zip(names, node_class.RETURN_TYPES, strict=True)):
            slot = {"name": name, "type": kind, "links": [], "slot_index": i}
            if is_list[i]:
                slot["shape"] = 6
            outputs.append(slot)
        return inputs, outputs, values

    def link(self, origin: dict, output: str, target: dict, input_name: str) -> None:
        out_slot = next(i for i, slot in enumerate(origin["outputs"]) if slot["name"] == output)
        in_slot = next(i for i, slot in enumerate(target["inputs"]) if slot["name"] == input_name)
        kind = origin["outputs"][out_slot]["type"]
        link_id = len(self.links) + 1
        origin["outputs"][out_slot]["links"].append(link_id)
        target["inputs"][in_slot]["link"] = link_id
        self.links.append([link_id, origin["id"], out_slot, target["id"], in_slot, kind])

    def write(self, path: Path) -> None:
        data = {
            "last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
            "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4,
        }
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


PROMPT = "anthro, female, solo, (fox:1.2), red hair, blue eyes, smiling, forest, sunlight"
NEGATIVE = "male, text, watermark, signature"


def prompt_check(pack) -> Workflow:
    wf = Workflow(pack)
    ckpt = wf.add("CheckpointLoaderSimple", (20, 40), (320, 100), ["your_sd_model.safetensors"])
    positive = wf.add("CLIPTextEncode", (380, 20), (400, 160), [PROMPT], title="Prompt")
    negative = wf.add("CLIPTextEncode", (380, 220), (400, 140), [NEGATIVE], title="Negative prompt")
    latent = wf.add("EmptyLatentImage", (20, 250), (320, 110), [1024, 1024, 4])
    sampler = wf.add("KSampler", (820, 20), (320, 270), [1, "randomize", 25, 6.0, "euler_ancestral", "normal", 1.0])
    decode = wf.add("VAEDecode", (820, 330), (220, 50))
    loader = wf.add("JTPModelLoader", (20, 420), (320, 110))
    check = wf.add("JTPPromptCheck", (1180, 20), (460, 620), {"prompt": PROMPT, "negative_prompt": NEGATIVE})
    save = wf.add("SaveImage", (1680, 20), (360, 400), ["best_of_batch"])
    report = wf.add("PreviewAny", (1680, 460), (360, 200))
    wf.add("Note", (20, 590), (320, 160), [
        "A batch of 4 from KSampler; JTP Prompt Check scores each image against the same prompt (keep its "
        "prompt in step with the Prompt node, or turn its prompt widget into an input fed by a text node) and "
        "Save Image keeps the best one. Tags the model does not know show as not checkable."])
    wf.link(ckpt, "MODEL", sampler, "model")
    wf.link(ckpt, "CLIP", positive, "clip")
    wf.link(ckpt, "CLIP", negative, "clip")
    wf.link(ckpt, "VAE", decode, "vae")
    wf.link(positive, "CONDITIONING", sampler, "positive")
    wf.link(negative, "CONDITIONING", sampler, "negative")
    wf.link(latent, "LATENT", sampler, "latent_image")
    wf.link(sampler, "LATENT", decode, "samples")
    wf.link(loader, "jtp_model", check, "jtp_model")
    wf.link(decode, "IMAGE", check, "image")
    wf.link(check, "best_image", save, "images")
    wf.link(check, "report", report, "source")
    return wf


def tag_options(pack) -> Workflow:
    wf = Workflow(pack)
    image = wf.add("LoadImage", (20, 40), (320, 360), ["example.png", "image"])
    loader = wf.add("JTPModelLoader", (20, 450), (320, 110))
    options = wf.add("JTPTagOptions", (380, 400), (380, 260), {"implications": "remove", "group_by_category": True})
    tagger = wf.add("JTPTagger", (800, 40), (440, 640))
    preview = wf.add("PreviewAny", (1280, 40), (360, 200))
    wf.link(loader, "jtp_model", tagger, "jtp_model")
    wf.link(image, "IMAGE", tagger, "image")
    wf.link(image, "MASK", tagger, "mask")
    wf.link(options, "tag_options", tagger, "tag_options")
    wf.link(tagger, "tags", preview, "source")
    return wf


def caption_folder(pack) -> Workflow:
    wf = Workflow(pack)
    loader = wf.add("JTPModelLoader", (20, 40), (320, 110))
    caption = wf.add("JTPCaptionFolder", (380, 40), (440, 660), {"folder": "/path/to/your/dataset"})
    preview = wf.add("PreviewAny", (860, 40), (360, 200))
    wf.link(loader, "jtp_model", caption, "jtp_model")
    wf.link(caption, "summary", preview, "source")
    return wf


def load_tag_save(pack) -> Workflow:
    wf = Workflow(pack)
    images = wf.add("JTPLoadImagesFromFolder", (20, 40), (340, 200), {"folder": "/path/to/your/dataset"})
    loader = wf.add("JTPModelLoader", (20, 300), (340, 110))
    tagger = wf.add("JTPTagger", (400, 40), (440, 640))
    save = wf.add("JTPSaveCaptions", (880, 40), (360, 260))
    preview = wf.add("PreviewAny", (1280, 40), (360, 200))
    wf.link(loader, "jtp_model", tagger, "jtp_model")
    wf.link(images, "images", tagger, "image")
    wf.link(images, "masks", tagger, "mask")
    wf.link(images, "paths", save, "paths")
    wf.link(tagger, "tags", save, "captions")
    wf.link(save, "summary", preview, "source")
    return wf


EXAMPLES = {
    "jtp_prompt_check.json": prompt_check,
    "jtp_tag_options.json": tag_options,
    "jtp_caption_folder.json": caption_folder,
    "jtp_load_tag_save_captions.json": load_tag_save,
}


def main() -> None:
    from comfy_standin import StandIn, import_pack

    with tempfile.TemporaryDirectory() as models:
        standin = StandIn(Path(models))
        standin.install()
        try:
            pack = import_pack()
            for name, build in EXAMPLES.items():
                build(pack).write(ROOT / "example_workflows" / name)
                print("wrote", name)
        finally:
            standin.uninstall()


if __name__ == "__main__":
    main()
