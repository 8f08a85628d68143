"""JTP Tag Heatmap node: where a tag comes from, as a MASK (for inpainting) and as an overlay IMAGE."""

from __future__ import annotations

import json

import torch

from ..jtp_core.heatmaps import render
from ..jtp_core.heatmaps.heatmap import METHODS as HEATMAP_METHODS
from ..jtp_core.heatmaps.heatmap import tag_heatmaps_image_tensor
from .comfy_host import JTPModel, progress_reporter
from .inputs import CATEGORY, batch_size_input, jtp_model_input, transparency_input
from .shared_model import RUN_LOCK


class JTPTagHeatmap:
    DESCRIPTION = (
        "Shows where in the image a tag comes from (Grad-CAM, as in RedRocket's demo): a MASK aligned with the "
        "input image, ready for inpainting, and a colored overlay."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("mask", "overlay", "scores")
    OUTPUT_IS_LIST = (False, False, True)
    OUTPUT_TOOLTIPS = (
        "One mask per image, the size of the input image: the union of the tags' heat (1 = the tag is here).",
        "The heat in color over each image.",
        "One JSON object per image: {tag: score} for the mapped tags, e621 spelling.",
    )
    FUNCTION = "heatmap"
    # It shows its scores on the node. ComfyUI resends a cached node's text only to output nodes, so without
    # this a rerun whose previews are cached (or a reopened page) leaves the node's text box empty.
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "jtp_model": jtp_model_input(),
                "image": ("IMAGE", {"tooltip": "One image or a batch; each gets its own heatmap."}),
                "tags": ("STRING", {
                    "default": "top 1",
                    "tooltip": "Tags to locate, comma-separated; spaces or underscores, escaped parentheses "
                               "accepted (e.g. 'red hat, membrane \\(anatomy\\)'). 'top N' adds each image's N "
                               "highest-scoring tags. The mask is the union of all of them.",
                }),
                "threshold": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "0 = the mask is the soft heat. Above 0, the mask is 1 where the heat is at least "
                               "this and 0 elsewhere (try 0.4 for inpainting).",
                }),
                "feather": ("INT", {
                    "default": 0, "min": 0, "max": 256,
                    "tooltip": "Blur the mask's edges over this many pixels (after the threshold). 0 = sharp.",
                }),
                "normalize": (list(render.NORMALIZE_MODES), {
                    "default": render.NORMALIZE_MODES[0],
                    "tooltip": "per image: every tag's heat peaks at 1 in every image. per batch: relative to "
                               "the image of the batch where the tag is strongest, so weak images stay dim.",
                }),
                "opacity": ("FLOAT", {
                    "default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "How strongly the colored heat covers the image in the overlay.",
                }),
                "colormap": (list(render.COLORMAPS), {
                    "default": "jet",
                    "tooltip": "Colors of the overlay, from no heat to full heat.",
                }),
                "batch_size": batch_size_input(),
            },
            "optional": {
                "mask": transparency_input(note="Not the output mask."),
                "method": (list(HEATMAP_METHODS), {
                    "default": "auto",
                    "tooltip": "auto: the model's CAM (JTP-1: Grad-CAM; JTP-3 / Hydra: RedRocket's multi-layer CAM). "
                               "attention: the Hydra pool's per-tag attention, one cheap pass (JTP-3 / Hydra only).",
                }),
                "cam_layers": ("INT", {
                    "default": 1, "min": 1, "max": 27,
                    "tooltip": "JTP-3 / Hydra CAM: sum the evidence of the last N blocks (1 as in RedRocket's demo; "
                               "more spreads the map over larger parts).",
                }),
            },
        }

    def heatmap(
        self,
        jtp_model: JTPModel,
        image: torch.Tensor,
        tags: str,
        threshold: float,
        feather: int,
        normalize: str,
        opacity: float,
        colormap: str,
        batch_size: int,
        mask: torch.Tensor | None = None,
        method: str = "auto",
        cam_layers: int = 1,
    ):
        with RUN_LOCK:  # not at the same time as a right-click "Tag with JTP" (see shared_model.py)
            tagger = jtp_model.ready()
            heatmaps = tag_heatmaps_image_tensor(
                tagger, image, mask, tags, batch_size=batch_size or None, on_progress=progress_reporter(len(image)),
                method=method, layers=cam_layers,
            )
        # filled row block by row block: the outputs themselves are the only full-size tensors
        out_mask = render.render_masks(heatmaps, normalize, threshold, feather)
        shown = render.render_overlays(image, heatmaps, normalize, opacity, colormap)
        scores = [{tag: round(score, 4) for tag, score in zip(h.tags, h.scores, strict=True)} for h in heatmaps]
        text = [", ".join(f"{tag} {score:.2f}" for tag, score in table.items()) for table in scores]
        return {"ui": {"text": text}, "result": (out_mask, shown, [json.dumps(table) for table in scores])}
