"""JTP Model Loader node."""

from __future__ import annotations

from ..jtp_core import DEFAULT_MODEL, available_models
from ..jtp_core.inference.devices import DEVICES, PRECISIONS
from .comfy_host import JTPModel, model_dirs
from .inputs import CATEGORY, JTP_MODEL
from .shared_model import get_jtp_model


class JTPModelLoader:
    DESCRIPTION = "Loads a RedRocket JTP tagger. Known models are downloaded into models/jtp on first use."
    CATEGORY = CATEGORY
    RETURN_TYPES = (JTP_MODEL,)
    RETURN_NAMES = ("jtp_model",)
    OUTPUT_TOOLTIPS = ("The tagger, kept loaded while this node's inputs stay the same.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (available_models(model_dirs()), {
                    "default": DEFAULT_MODEL,
                    "tooltip": "JTP_PILOT (JTP-1) or JTP_PILOT2, or a folder in models/jtp holding one "
                               ".safetensors file and its tags.json. Missing known models are downloaded.",
                }),
                "device": (list(DEVICES), {
                    "default": "auto",
                    "tooltip": "auto = ComfyUI's device, with its memory management (the tagger gives its "
                               "VRAM back when a diffusion model needs it).",
                }),
                "precision": (list(PRECISIONS), {
                    "default": "auto",
                    "tooltip": "auto = fp16 on a GPU, fp32 on the CPU. fp32 matches the reference exactly.",
                }),
            }
        }

    def load(self, model: str, device: str, precision: str) -> tuple[JTPModel]:
        # shared with the right-click "Tag with JTP" route: one copy per set of inputs (see shared_model.py)
        return (get_jtp_model(model=model, device=device, precision=precision),)
