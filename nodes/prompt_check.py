"""JTP Prompt Check node: how well each image of a batch follows its prompt, and the best of the batch."""

from __future__ import annotations

import json
from typing import Any

import torch

from ..jtp_core import TagOptions
from ..jtp_core.tags.prompt_check import PromptChecker, best_index, parse_aliases
from ..jtp_core.tags.selection import tag_thresholds
from .comfy_host import JTPModel, progress_reporter
from .inputs import (
    CATEGORY,
    batch_size_input,
    calibration_input,
    jtp_model_input,
    tag_options_input,
    transparency_input,
)
from .shared_model import RUN_LOCK

UI_KEY = "jtp_check"  # ui[UI_KEY] = one check per image (see ImageCheck.as_dict), plus "best"


class JTPPromptCheck:
    DESCRIPTION = (
        "Checks how well each image follows an e621-style prompt: the weighted share of the prompt's tags the "
        "tagger sees (minus a penalty for negative-prompt tags it sees), the missing and unwanted tags, and the "
        "best image of the batch. Tags the model does not know are listed as not checkable, never counted."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT", "STRING", "STRING", "STRING")
    RETURN_NAMES = ("best_image", "best_index", "adherence", "missing_tags", "unwanted_tags", "report")
    OUTPUT_IS_LIST = (False, False, True, True, True, False)
    OUTPUT_TOOLTIPS = (
        "The image of the batch that follows the prompt best (highest adherence; ties: fewer unwanted tags, "
        "then higher scores).",
        "Its index in the batch (0 = first).",
        "One adherence per image, 0..1.",
        "One string per image: the prompt tags the model does not see, comma-separated.",
        "One string per image: the negative prompt's tags the model sees, comma-separated.",
        "JSON: per image its adherence and tags (seen, missing, unwanted as [tag, score, weight]), the tags "
        "that are not checkable, and the best index.",
    )
    FUNCTION = "check"
    OUTPUT_NODE = True  # shows the check on the node

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "jtp_model": jtp_model_input(),
                "image": ("IMAGE", {"tooltip": "One image or a batch (e.g. a KSampler batch); each is checked."}),
                "prompt": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": "The prompt to check, e621 tags: spaces or underscores, (tag:1.2) / (tag) / [tag] "
                               "weights, \\( \\) for literal parentheses. LoRA calls and BREAK are ignored.",
                }),
                "threshold": ("FLOAT", {
                    "default": TagOptions().threshold, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "A tag counts as seen when its score is above this (JTP-3 family: at or above), "
                               "unless calibration gives JTP-3 / Hydra models per-tag thresholds.",
                }),
                "negative_penalty": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                    "tooltip": "What one negative-prompt tag seen in the image costs, relative to one missing "
                               "prompt tag (weights apply). 0 = only report them.",
                }),
                "batch_size": batch_size_input(),
            },
            "optional": {
                "negative_prompt": ("STRING", {
                    "default": "", "multiline": True,
                    "tooltip": "Tags that should not be in the image; those the model sees are reported (and "
                               "penalised). Tags also in the prompt are ignored here.",
                }),
                "aliases": ("STRING", {
                    "default": "",
                    "tooltip": "Extra spellings, 'alias=tag' separated by commas, e.g. 'kitty=domestic_cat'. "
                               "With a tag table (tag_options) a tag is also seen when a tag implying it is.",
                }),
                "mask": transparency_input(),
                "tag_options": tag_options_input(),
                "calibration": calibration_input(),
            },
        }

    def check(
        self,
        jtp_model: JTPModel,
        image: torch.Tensor,
        prompt: str,
        threshold: float,
        negative_penalty: float,
        batch_size: int,
        negative_prompt: str = "",
        aliases: str = "",
        mask: torch.Tensor | None = None,
        tag_options: dict[str, Any] | None = None,
        calibration: str = "auto",
    ):
        tag_table = (tag_options or {}).get("tag_table")
        with RUN_LOCK:
            tagger = jtp_model.ready()
            # the tagger's own thresholds: calibrated per tag for JTP-3 / Hydra (calibration), else `threshold`
            options = TagOptions(threshold=threshold, calibration=calibration or "auto")
            checker = PromptChecker(
                prompt, tagger.tags, negative_prompt=negative_prompt, threshold=threshold,
                inclusive=tagger.labels.inclusive_threshold,
                negative_penalty=negative_penalty, tag_table=tag_table, aliases=parse_aliases(aliases),
                thresholds=tag_thresholds(tagger.labels, options),
            )
            probs = tagger.predict_image_tensor(
                image, mask, batch_size=batch_size or None, on_progress=progress_reporter(len(image))
            )
        checks = checker.check_batch(probs)
        best = best_index(checks)
        adherence = [check.adherence for check in checks]
        missing = [", ".join(c.tag for c in check.missing) for check in checks]
        unwanted = [", ".join(c.tag for c in check.unwanted) for check in checks]
        per_image = [check.as_dict() for check in checks]
        report = json.dumps({"best_index": best, "images": per_image})
        ui = {UI_KEY: [{"best": best, "images": per_image}], "text": [_summary(checks, best)]}
        return {"ui": ui, "result": (image[best:best + 1], best, adherence, missing, unwanted, report)}


def _summary(checks, best: int) -> str:
    lines = []
    for i, check in enumerate(checks):
        mark = " (best)" if i == best else ""
        lines.append(f"#{i + 1}{mark}: {check.adherence:.0%}; missing: {', '.join(c.tag for c in check.missing)}")
    return "\n".join(lines)
