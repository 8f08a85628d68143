"""Tag heatmaps for the Hydra family (JTP-3, Hydra 3.5), on each image's own patch grid.

Two maps (families/hydra/cam.py): ``cam``, RedRocket's JTP-3 demo method (grad · sign over the raw outputs of the
last ``layers`` blocks, the pool run on each), and ``attention``, the per-tag weights of the pool's first
attention (one pass, no gradients). Positive CAM evidence is kept (relu) and each map is scaled to a maximum of
1, as for JTP-1's Grad-CAM; the raw maximum is kept as the peak, to compare images.

The grid covers the whole resized image (NaFlex has no padding) in display orientation (both preprocessing
pipelines apply EXIF orientation), so a grid cell maps back by following pixel centres through the resize.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ..families.base import stack_inputs
from ..families.hydra.cam import attention_maps, multilayer_cam
from ..families.hydra.resize import PATCH_SIZE
from ..inference.tagger import ProgressCallback, Tagger
from .mapping import GridMapping, axis_weights, exif_orientation

METHODS = ("cam", "attention")


def hydra_heatmaps(
    tagger: Tagger,
    images: Sequence[Image.Image],
    query,
    batch_size: int,
    on_progress: ProgressCallback | None = None,
    method: str = "cam",
    layers: int = 1,
) -> list:
    """Heatmaps of ``query`` (a heatmap.TagQuery) for PIL images, chunk by chunk, in display orientation."""
    from .heatmap import Heatmap, normalize_cams, pick_tags  # deferred: heatmap dispatches to this module

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} for {tagger.family.name} models")
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = stack_inputs([tagger.preprocessor.from_pil(image) for image in chunk])
        probs = tagger.predict(batch) if query.top else torch.zeros(len(chunk), len(tagger.tags))
        indices = pick_tags(query, probs)
        inputs = (batch["patches"], batch["coords"], batch["valid"])
        if method == "cam":
            found = multilayer_cam(tagger.model, *inputs, indices, depth=layers)
        else:
            found = attention_maps(tagger.model, *inputs, indices)
        for image, row, scores, grid in zip(chunk, found.tags, found.scores, found.maps, strict=True):
            grids, peaks = normalize_cams(torch.relu(grid.float()))
            results.append(Heatmap(
                tags=[tagger.tags[i] for i in row.tolist()], scores=scores.tolist(), peaks=peaks.tolist(),
                grids=grids.contiguous(), mapping=hydra_mapping(display_size(image), tuple(grid.shape[-2:])),
            ))
        if on_progress is not None:
            on_progress(len(results), len(images))
    return results


def display_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) as viewers show the image: EXIF orientations 5-8 swap the sides."""
    turned = exif_orientation(image) in (5, 6, 7, 8)
    return (image.width, image.height) if turned else (image.height, image.width)


def hydra_mapping(image_size: tuple[int, int], grid: tuple[int, int]) -> GridMapping:
    """Grid [gh, gw] → image (height, width): pixel centres followed through the resize to the grid·16 image
    (no padding), read bilinearly between patch centres (edges clamped)."""
    (height, width), (rows, cols) = image_size, grid
    return GridMapping(
        axis_weights(height, rows * PATCH_SIZE, 0, PATCH_SIZE, rows),
        axis_weights(width, cols * PATCH_SIZE, 0, PATCH_SIZE, cols),
    )
