"""Where in an image a Hydra tag comes from: two per-token maps on each image's own patch grid.

- ``multilayer_cam`` (RedRocket's JTP-3 demo): keep the raw (pre-final-norm) outputs X of the last ``depth``
  blocks; run the pool directly on each X with the head cut down to the one tag; backpropagate that tag's logit
  to X; a token's score is Σ_channels grad(X) · sign(X), summed over the kept layers. Signed: > 0 speaks for the
  tag, < 0 against it.
- ``attention_maps``: the per-tag softmax weights of the pool's first attention, averaged over heads; one
  pass, no gradients, in [0, 1] and summing to 1 over the image's tokens.

Both return, per image, a float32 [T, gh, gw] grid (gh, gw from that image's coords; token t goes to its
(y, x)). The backbone runs as in tagging, under inference mode. The head runs in float32 on fresh copies of
just the needed weights (q and the per-tag weights sliced to the requested tags), outside inference mode
even when called inside one (ComfyUI), so the shared model is never touched: no hooks, no ``.grad``, the
same flags and tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .heads import Hydra2Pool, HydraPool, TagDot, hydra_logits
from .model import HydraTagger


@dataclass
class HydraMaps:
    tags: torch.Tensor  # [B, T] tag indices
    scores: torch.Tensor  # [B, T] the model's probabilities for those tags (as in tagging)
    maps: list[torch.Tensor]  # per image [T, gh, gw] float32


def multilayer_cam(
    model: HydraTagger,
    patches: torch.Tensor,
    coords: torch.Tensor,
    valid: torch.Tensor,
    tags: torch.Tensor,
    depth: int = 1,
) -> HydraMaps:
    """CAM of ``tags`` ([T] for every image or [B, T]) from the last ``depth`` blocks (1…model depth)."""
    if not 1 <= depth <= len(model.blocks):
        raise ValueError(f"depth must be 1…{len(model.blocks)}, not {depth}")
    tags = _tag_matrix(tags, len(patches))
    with torch.inference_mode():
        features, valid, coords, kept = model.features(patches, coords, valid, keep_blocks=depth)
        scores = _scores(model, features, valid, tags)
    maps = []
    heads = _HeadCache(model)
    with torch.inference_mode(False), torch.enable_grad():
        for b in range(len(tags)):
            pool, head = heads.get(tags[b])
            mask = valid[b : b + 1].clone()
            total = torch.zeros(tags.shape[1], valid.shape[1], device=valid.device)
            for output in kept:
                x = output[b : b + 1].float().clone().requires_grad_(True)  # a fresh leaf, not an inference tensor
                logits = hydra_logits(pool, head, x, mask, tag_chunk=0)[0]
                for slot in range(len(logits)):
                    (grad,) = torch.autograd.grad(logits[slot], x, retain_graph=slot + 1 < len(logits))
                    total[slot] += (grad[0] * x.detach()[0].sign()).sum(dim=-1)
            maps.append(_to_grid(total, coords[b], valid[b]))
    return HydraMaps(tags=tags.cpu(), scores=scores.cpu(), maps=maps)


def attention_maps(
    model: HydraTagger, patches: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor, tags: torch.Tensor
) -> HydraMaps:
    """The pool's first-attention weights for ``tags`` ([T] or [B, T]), averaged over heads, per image."""
    tags = _tag_matrix(tags, len(patches))
    with torch.inference_mode():
        features, valid, coords, _ = model.features(patches, coords, valid)
        scores = _scores(model, features, valid, tags)
    maps = []
    heads = _HeadCache(model)
    with torch.inference_mode(False), torch.no_grad():
        for b in range(len(tags)):
            pool, _ = heads.get(tags[b])
            weights = pool.attention_weights(features[b : b + 1].float().clone(), valid[b : b + 1].clone())[0]
            maps.append(_to_grid(weights, coords[b], valid[b]))
    return HydraMaps(tags=tags.cpu(), scores=scores.cpu(), maps=maps)


def _tag_matrix(tags: torch.Tensor, batch: int) -> torch.Tensor:
    tags = torch.as_tensor(tags, dtype=torch.long)
    if tags.ndim == 1:
        tags = tags.expand(batch, -1)
    if tags.ndim != 2 or len(tags) != batch:
        raise ValueError(f"tags must be [T] or [{batch}, T], not {list(tags.shape)}")
    return tags


def _scores(model: HydraTagger, features: torch.Tensor, valid: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    rows = [model.head_logits(features[b : b + 1], valid[b : b + 1], tags=tags[b].to(features.device))
            for b in range(len(tags))]
    return torch.sigmoid(torch.cat(rows).float())


class _HeadCache:
    """One float32 head copy per distinct tag list (images usually share theirs)."""

    def __init__(self, model: HydraTagger) -> None:
        self.model = model
        self.copies: dict[tuple[int, ...], tuple[HydraPool | Hydra2Pool, nn.Module | None]] = {}

    def get(self, tags: torch.Tensor) -> tuple[HydraPool | Hydra2Pool, nn.Module | None]:
        key = tuple(tags.tolist())
        if key not in self.copies:
            self.copies.clear()  # keep one copy at a time: the pool's shared weights are large at real size
            self.copies[key] = _fp32_head(self.model, tags)
        return self.copies[key]


def _fp32_head(model: HydraTagger, tags: torch.Tensor) -> tuple[HydraPool | Hydra2Pool, nn.Module | None]:
    """Fresh float32 head modules holding only ``tags`` (q and per-tag weights sliced), on the model's device."""
    config = model.config
    args = dict(dim=config.width, num_tags=len(tags), heads=config.pool_heads, head_dim=config.pool_head_dim,
                ff_dim=config.ff_dim, eps=config.pool_eps, device="meta")
    if config.variant == "rr_hydra":
        pool, head, per_tag = HydraPool(**args), None, {"q": 1, "out_proj.weight": 0}
    else:
        pool = Hydra2Pool(mid_blocks=config.mid_blocks, **args)
        head, per_tag = TagDot(len(tags), config.pool_heads * config.pool_head_dim, device="meta"), {"q": 1}
    pool.requires_grad_(False)  # assign=True keeps these flags: gradients flow to the tokens only
    index = tags.to(model.attn_pool.q.device)
    pool.load_state_dict({name: _fp32(t, index, per_tag.get(name)) for name, t in model.attn_pool.state_dict().items()},
                         strict=True, assign=True)
    if head is not None:
        head.requires_grad_(False)
        head.load_state_dict({"weight": _fp32(model.head.weight, index, 0)}, strict=True, assign=True)
    return pool, head


def _fp32(tensor: torch.Tensor, index: torch.Tensor, tag_dim: int | None) -> torch.Tensor:
    tensor = tensor.detach()
    if tag_dim is not None:
        tensor = tensor.index_select(tag_dim, index)
    tensor = tensor.float()
    return tensor.clone() if tensor.is_inference() else tensor  # inference tensors cannot be saved for backward


def _to_grid(values: torch.Tensor, coords: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[T, N] token values → [T, gh, gw] at each valid token's (y, x); float32 on the CPU."""
    values, coords, valid = values.detach().float().cpu(), coords.cpu().long(), valid.cpu()
    ys, xs = coords[valid].unbind(-1)
    grid = torch.zeros(len(values), int(ys.max()) + 1, int(xs.max()) + 1)
    grid[:, ys, xs] = values[:, valid]
    return grid
