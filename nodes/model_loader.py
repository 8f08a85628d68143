"""JTP Model Loader node."""

from __future__ import annotations

from ..jtp_core import DEFAULT_MODEL, available_models
from ..jtp_core.families.hydra.family import DEFAULT_SEQUENCE_LENGTH, MAX_SEQUENCE, MIN_SEQUENCE
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
                    "tooltip": "JTP_PILOT / JTP_PILOT2 (JTP-1, fixed 384²), JTP_3_HYDRA / HYDRA_3_5 (any aspect "
                               "ratio, calibrated thresholds), or a folder in models/jtp holding one .safetensors "
                               "file (and its tags.json for JTP-1). Missing known models are downloaded.",
                }),
                "device": (list(DEVICES), {
                    "default": "auto",
                    "tooltip": "auto = ComfyUI's device, with its memory management (the tagger gives its "
                               "VRAM back when a diffusion model needs it).",
                }),
                "precision": (list(PRECISIONS), {
                    "default": "auto",
                    "tooltip": "auto = fp32 on the CPU; on a GPU fp16 for JTP-1 and bf16 for JTP-3 / Hydra, as "
                               "RedRocket runs them. fp32 matches the reference exactly.",
                }),
            },
            "optional": {
                "sequence_length": ("INT", {
                    "default": DEFAULT_SEQUENCE_LENGTH, "min": MIN_SEQUENCE, "max": MAX_SEQUENCE, "step": 64,
                    "tooltip": "JTP-3 / Hydra only: 16×16 patches per image. 1024 is what the models were made "
                               "for; fewer is faster and coarser, more sees small details. Images are never "
                               "enlarged. JTP-1 ignores it.",
                }),
            },
        }

    def load(
        self, model: str, device: str, precision: str, sequence_length: int = DEFAULT_SEQUENCE_LENGTH
    ) -> tuple[JTPModel]:
        # shared with the right-click "Tag with JTP" route: one copy per set of inputs (see shared_model.py)
        return (get_jtp_model(model=model, device=device, precision=precision, sequence_length=sequence_length),)
