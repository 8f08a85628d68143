"""JTP Tagger node."""

from __future__ import annotations

import json

import torch

from ..jtp_core import tag_results
from .comfy_host import JTPModel, progress_reporter
from .inputs import (
    CATEGORY,
    batch_size_input,
    calibration_input,
    format_inputs,
    jtp_model_input,
    tag_options_input,
    transparency_input,
)
from .inputs import tag_options as _tag_options
from .shared_model import RUN_LOCK
from .tag_view import UI_KEY, category_lookup, tag_rows


class JTPTagger:
    DESCRIPTION = "Tags images with a JTP model; outputs one prompt string per image and the scores as JSON."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("tags", "scores")
    OUTPUT_IS_LIST = (True, True)
    OUTPUT_TOOLTIPS = (
        "One tag string per image of the batch.",
        "One JSON object per image: {tag: score} for the kept tags, e621 spelling.",
    )
    FUNCTION = "tag"
    # It shows its tags on the node, so a graph ending at it is complete (else ComfyUI: "Prompt has no outputs").
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "jtp_model": jtp_model_input(),
                "image": ("IMAGE", {"tooltip": "One image or a batch; every image is tagged."}),
                **format_inputs(),
                "batch_size": batch_size_input(),
            },
            "optional": {
                "mask": transparency_input(),
                "tag_options": tag_options_input(),
                "calibration": calibration_input(),
            },
        }

    def tag(
        self,
        jtp_model: JTPModel,
        image: torch.Tensor,
        batch_size: int,
        mask: torch.Tensor | None = None,
        tag_options: dict | None = None,
        **widgets,
    ):
        with RUN_LOCK:  # not at the same time as a right-click "Tag with JTP" (see shared_model.py)
            tagger = jtp_model.ready()
            probs = tagger.predict_image_tensor(
                image, mask, batch_size=batch_size or None, on_progress=progress_reporter(len(image))
            )
        options = _tag_options(tag_options, **widgets)
        results = tag_results(probs, tagger.labels, options)
        texts = [result.text for result in results]
        scores = [json.dumps(result.scores) for result in results]
        # the tag view on the node: per image, the kept tags as [tag, score, category] by score
        category = category_lookup(tagger, options.tag_table)
        rows = [tag_rows(result.scores, category) for result in results]
        return {"ui": {"text": texts, UI_KEY: rows}, "result": (texts, scores)}
