"""Tag heatmaps: where in an image a tag comes from (Grad-CAM, as in RedRocket's PILOT2 beta demo).

Grad-CAM on the output tokens of the ViT's final ``norm``: the gradient of the tag's probability with respect
to those tokens, averaged over the tokens, weighs the channels; relu(tokens · weights) is a grid×grid map
(27×27 for JTP), normalised to [0, 1]. The map is then put back onto each *original* image exactly: the patch
grid covers the first grid·patch pixels (378) of the 384 padded square, the centre padding of preprocessing
is undone and the result is resized to the image's own size, in one interpolation (mapping.py: computed row
block by row block, so a 144 MP image costs O(pixels) bytes, not [tags, H, W] float32 stacks).

EXIF orientation: the model sees the image as stored (as the JTP reference does: no EXIF transpose before
tagging); the maps are then turned into the orientation viewers (and ComfyUI's Load Image) show.

Only the attention-pool head runs with gradients, in float32 and on a fresh leaf tensor, so this works under
an outer ``torch.inference_mode()`` (ComfyUI), in half precision, and leaves the shared model untouched
(no hooks, no ``.grad``, same ``requires_grad`` flags and dtype).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from ..errors import JTPError, UnknownTagError
from ..families.pilot.architecture import (
    HEAD_MODULES,  # the parts forward_head uses: they run in float32 with gradients
)
from ..families.pilot.preprocess import fit_size, image_tensor_to_pils, preprocess_pils
from ..inference.tagger import ProgressCallback, Tagger
from ..tags.postprocess import normalize_tag, parse_tag_list
from .mapping import BLOCK_BYTES, GridMapping, axis_weights, exif_orientation, orient

_TOP = re.compile(r"top\s*(\d+)", re.IGNORECASE)
METHODS = ("auto", "attention")  # auto: each family's CAM; attention: the Hydra pool's (see tag_heatmaps)


@dataclass(frozen=True)
class TagQuery:
    """Which tags to map: ``named`` tag indices, then the ``top`` highest-scoring others of each image."""

    named: tuple[int, ...] = ()
    top: int = 0

    @property
    def count(self) -> int:
        return len(self.named) + self.top


class Heatmap:
    """One image's heatmaps, one per tag, aligned with the image as displayed.

    Kept at model resolution (``grids``) with the ``mapping`` onto the image; ``maps`` builds the full
    [T, H, W] float32 stack on demand (fine for small images; renderers use ``rows`` blocks instead).
    A Heatmap can also be made from ready maps: ``Heatmap(tags, scores, maps, peaks)``.
    """

    def __init__(
        self,
        tags: list[str],
        scores: list[float],
        maps: torch.Tensor | None = None,
        peaks: list[float] | None = None,
        grids: torch.Tensor | None = None,
        mapping: GridMapping | None = None,
    ) -> None:
        if maps is None and (grids is None or mapping is None):
            raise ValueError("a Heatmap needs maps, or grids and their mapping")
        self.tags = tags  # e621 spelling
        self.scores = scores  # the model's probability for each tag
        self.peaks = list(peaks) if peaks is not None else [1.0] * len(tags)  # raw Grad-CAM maxima (to compare)
        self.grids = grids  # [T, gh, gw] float32 in [0, 1]
        self.mapping = mapping
        self._maps = maps

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the maps."""
        return tuple(self._maps.shape[-2:]) if self._maps is not None else self.mapping.size

    @property
    def maps(self) -> torch.Tensor:
        """[T, H, W] float32 in [0, 1]."""
        if self._maps is not None:
            return self._maps
        return self.mapping.full(self.grids).clamp_(0, 1)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows start:stop of every map: [T, stop - start, W] float32 in [0, 1]."""
        if self._maps is not None:
            return self._maps[:, start:stop].float()
        return self.mapping.rows(self.grids, start, stop).clamp_(0, 1)

    def block_rows(self) -> int:
        height, width = self.size
        return max(1, BLOCK_BYTES // (4 * max(1, width) * max(1, len(self.tags))))


def parse_tag_query(text: str, tags: Sequence[str]) -> TagQuery:
    """'red hat, blue_eyes, membrane \\(anatomy\\), top 3' → a TagQuery; unknown tags raise UnknownTagError."""
    lookup = {normalize_tag(tag): index for index, tag in enumerate(tags)}
    named: list[int] = []
    top = 0
    for item in parse_tag_list(text):
        match = _TOP.fullmatch(item)
        if match:
            top += int(match.group(1))
            continue
        index = lookup.get(normalize_tag(item))
        if index is None:
            raise UnknownTagError(_unknown_tag_message(item, lookup, tags))
        if index not in named:
            named.append(index)
    if not named and not top:
        raise UnknownTagError("no tags given: name one or more tags (comma-separated) or write 'top N'")
    return TagQuery(named=tuple(named), top=min(top, len(tags) - len(named)))


def _unknown_tag_message(item: str, lookup: dict[str, int], tags: Sequence[str]) -> str:
    close = difflib.get_close_matches(normalize_tag(item), list(lookup), n=5, cutoff=0.6)
    message = f"unknown tag {item!r}: the model has no such tag among its {len(tags)}"
    if close:
        message += "; close matches: " + ", ".join(tags[lookup[key]] for key in close)
    return message


def pick_tags(query: TagQuery, probs: torch.Tensor) -> torch.Tensor:
    """Tag indices [B, T] per image: the named ones, then the highest-scoring others."""
    named = torch.tensor(query.named, dtype=torch.long, device=probs.device).expand(len(probs), -1)
    if not query.top:
        return named
    ranked = probs.detach().clone()
    ranked[:, list(query.named)] = -1.0  # never pick a named tag twice
    top = torch.topk(ranked, query.top, dim=1).indices
    return torch.cat([named, top], dim=1)


def grad_cam(
    model: nn.Module, pixels: torch.Tensor, query: TagQuery
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model inputs [B,3,S,S] → (tag indices [B,T], probabilities [B,T], raw maps [B,T,grid_h,grid_w]).

    Maps are relu'd Grad-CAM values in float32, not yet normalised. Works on any timm ViT with an
    attention-pool head (``forward_features`` ends with ``norm``; ``forward_head`` reads its tokens).
    """
    parameter = next(model.parameters())
    grid_h, grid_w = model.patch_embed.grid_size
    prefix = getattr(model, "num_prefix_tokens", 0)
    with torch.inference_mode():  # the backbone needs no gradients: no activations kept
        features = model.forward_features(pixels.to(device=parameter.device, dtype=parameter.dtype))
    with torch.inference_mode(False), torch.enable_grad():
        # a fresh float32 leaf that is not an inference tensor: the only thing gradients flow to
        tokens = features.float().clone().requires_grad_(True)
        probs = _head_in_fp32(model, tokens)
        indices = pick_tags(query, probs)
        patches = tokens.detach()[:, prefix:]
        maps = []
        for slot in range(indices.shape[1]):
            chosen = probs.gather(1, indices[:, slot : slot + 1]).sum()  # images are independent: one pass
            (grad,) = torch.autograd.grad(chosen, tokens, retain_graph=slot + 1 < indices.shape[1])
            weights = grad[:, prefix:].mean(dim=1)  # [B, C]: averaged over the patch tokens
            maps.append(torch.relu(torch.einsum("bnc,bc->bn", patches, weights)))
        scores = probs.detach().gather(1, indices)
    cams = torch.stack(maps, dim=1) if maps else patches.new_zeros(len(patches), 0, grid_h * grid_w)
    return indices.cpu(), scores.cpu(), cams.reshape(len(cams), -1, grid_h, grid_w).cpu()


class _HeadOnly(nn.Module):
    """Calls the wrapped ViT's own ``forward_head``, so the pooling path is timm's, not a copy of it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(tokens)


def _head_in_fp32(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The head on float32 copies of its weights (half-precision gradients underflow over 729 tokens).

    ``functional_call`` swaps the tensors in only for this call. Weights made under inference mode cannot be
    saved for backward, so those are cloned; float32 weights that are normal tensors are used as they are.
    """
    replacements = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name.split(".")[0] in HEAD_MODULES:
            copy = tensor.detach().float()
            replacements[f"model.{name}"] = copy.clone() if copy.is_inference() else copy
    return torch.func.functional_call(_HeadOnly(model), replacements, (tokens,))


def cam_to_image(
    cams: torch.Tensor, image_size: tuple[int, int], input_size: int, patch_size: tuple[int, int]
) -> torch.Tensor:
    """Grid maps [..., gh, gw] → [..., H, W] on the original image, by bilinear interpolation.

    Each original pixel centre is followed through preprocessing (fit to ``input_size``, centre padding) to
    the padded square, and the map is read there. Pixels beyond the grid (the last 6 rows/columns of the
    384 square, which no patch sees) get 0: the model has no evidence for them.
    """
    return pilot_mapping(image_size, input_size, patch_size, tuple(cams.shape[-2:])).full(cams)


def pilot_mapping(
    image_size: tuple[int, int],
    input_size: int,
    patch_size: tuple[int, int],
    grid: tuple[int, int],
    orientation: int = 1,
) -> GridMapping:
    """The grid → image mapping of PILOT's preprocessing (fit to ``input_size``, centre padding) for an image
    of ``image_size`` (height, width) as stored, turned to EXIF ``orientation`` for display."""
    height, width = image_size
    fitted_h, fitted_w = fit_size(height, width, input_size)
    rows = axis_weights(height, fitted_h, (input_size - fitted_h) // 2, patch_size[0], grid[0])
    cols = axis_weights(width, fitted_w, (input_size - fitted_w) // 2, patch_size[1], grid[1])
    return orient(rows, cols, orientation)


def normalize_cams(cams: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw maps [..., gh, gw] → (maps scaled to a maximum of 1, each map's maximum); all-zero maps stay 0."""
    peaks = cams.amax(dim=(-2, -1))
    scale = torch.where(peaks > 0, peaks, torch.ones_like(peaks))
    return cams / scale[..., None, None], peaks


def tag_heatmaps(
    tagger: Tagger,
    images: Sequence[Image.Image],
    tags: str | TagQuery,
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    method: str = "auto",
    layers: int = 1,
) -> list[Heatmap]:
    """Heatmaps of ``tags`` (names, or 'top N') for PIL images of any sizes, chunk by chunk.

    ``method``: "auto" = each family's CAM (JTP-1: Grad-CAM on the final tokens; JTP-3 / Hydra: RedRocket's
    multi-layer CAM over the last ``layers`` blocks); "attention" = the Hydra pool's per-tag attention (one
    pass). Maps come out in each image's display orientation (its EXIF orientation applied); JTP-1 sees the
    image as stored, as in its reference, and the Hydra models see it turned, as in theirs.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    query = tags if isinstance(tags, TagQuery) else parse_tag_query(tags, tagger.tags)
    batch_size = tagger.batch_size(batch_size)
    if tagger.family.name == "hydra":
        from .hydra import hydra_heatmaps  # deferred: only Hydra models need it

        return hydra_heatmaps(
            tagger, images, query, batch_size, on_progress, "cam" if method == "auto" else method, layers
        )
    if method != "auto":
        raise JTPError(f"the {method} map is for JTP-3 / Hydra models; JTP-1 models have Grad-CAM (method auto)")
    model = tagger.model
    input_size, patch_size = tagger.preprocessor.size, tuple(model.patch_embed.patch_size)
    results: list[Heatmap] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        indices, scores, cams = grad_cam(model, preprocess_pils(chunk, input_size), query)
        cams, peaks = normalize_cams(cams)
        for image, row, score, cam, peak in zip(chunk, indices, scores, cams, peaks, strict=True):
            mapping = pilot_mapping((image.height, image.width), input_size, patch_size, tuple(cam.shape[-2:]),
                                    exif_orientation(image))
            results.append(Heatmap(
                tags=[tagger.tags[i] for i in row.tolist()], scores=score.tolist(), peaks=peak.tolist(),
                grids=cam.float().contiguous(), mapping=mapping,
            ))
        if on_progress is not None:
            on_progress(len(results), len(images))
    return results


def tag_heatmaps_image_tensor(
    tagger: Tagger,
    images: torch.Tensor,
    mask: torch.Tensor | None,
    tags: str | TagQuery,
    batch_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    method: str = "auto",
    layers: int = 1,
) -> list[Heatmap]:
    """ComfyUI IMAGE [B,H,W,C] (+ MASK as transparency) → one Heatmap per image, maps [T, H, W]."""
    pils = image_tensor_to_pils(images, mask)
    return tag_heatmaps(tagger, pils, tags, batch_size, on_progress, method, layers)
