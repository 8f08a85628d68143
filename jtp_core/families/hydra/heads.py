"""The per-tag attention-pool heads of JTP-3 Hydra (``rr_hydra``) and Hydra 3.5 (``rr_hydra2``).

Both pools give every tag its own query: per head h (32 heads of 64 channels),
``A[c] = softmax(q[h, c] · K_hᵀ / √64, key mask) · V_h`` with ``K, V = split(x · kvᵀ)`` and K RMS-normalised
per head (no weight, eps 1e-5). q is used as stored (the release stores it already normalised). The pool's
output for tag c is then refined by feed-forward blocks (and, for ``rr_hydra2``, a second attention) and read
out by that tag's own weights:

- ``rr_hydra``: ``H = A + ff_out(silu(u₁) ⊙ u₂)``, ``u = ff_in(LN(A))``; ``o = H[c] · out_proj[c]`` (2 numbers),
  ``logit = silu(o₀) · o₁``.
- ``rr_hydra2``: ``H1 = A + FF(A)`` with ``FF(x) = proj_out(softplus(u₁) ⊙ u₂)``, ``u = proj_in(LN(x))`` (LN without
  affine); a mid block re-queries the *same* K, V with ``RMSNorm(q_proj(H1))`` per head, adds ``o_proj`` of
  the result and its own FF; ``logit = H3[c] · head[c]``.

Tags never interact, so the head runs in chunks of ``tag_chunk`` tags (q dim 1, per-tag weight dim 0): the
activations of a chunk are [B, chunk, 2·ff] instead of [B, C, 2·ff] (≈184 MB per image in bf16 for all of
JTP-3's 7,504 tags). Submodule and parameter names are the checkpoint's (``attn_pool.q``, ``attn_pool.kv.weight``…).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

TagIndex = slice | torch.Tensor | None  # which tags: a range, a LongTensor of indices, or all


def tag_chunks(num_tags: int, tags: torch.Tensor | None, chunk: int) -> Iterator[slice | torch.Tensor]:
    """Consecutive pieces of at most ``chunk`` tags: slices of 0..num_tags, or pieces of ``tags``."""
    chunk = max(int(chunk), 1) if chunk else max(num_tags, 1)
    if tags is None:
        for start in range(0, num_tags, chunk):
            yield slice(start, min(start + chunk, num_tags))
    else:
        yield from torch.split(tags, chunk)


class TagGatedProjection(nn.Module):
    """JTP-3's readout: per tag c, ``o = h · weight[c]`` ([in, 2]) and ``logit = silu(o₀) · o₁``."""

    def __init__(self, num_tags: int, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tags, dim, 2, device=device, dtype=dtype))

    def forward(self, h: torch.Tensor, index: TagIndex = None) -> torch.Tensor:
        weight = self.weight if index is None else self.weight[index]
        o = torch.einsum("bnd,ndk->bnk", h, weight)
        return F.silu(o[..., 0]) * o[..., 1]


class TagDot(nn.Module):
    """Hydra 3.5's readout: ``logit[c] = h[c] · weight[c]`` (no bias)."""

    def __init__(self, num_tags: int, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tags, dim, device=device, dtype=dtype))

    def forward(self, h: torch.Tensor, index: TagIndex = None) -> torch.Tensor:
        weight = self.weight if index is None else self.weight[index]
        return torch.einsum("bnd,nd->bn", h, weight)


class GatedFeedForward(nn.Module):
    """``proj_out(softplus(u₁) ⊙ u₂)``, ``u = proj_in(LN(x))`` split in halves; LN has no affine (eps 1e-5)."""

    def __init__(self, dim: int, hidden: int, eps: float = 1e-5, device=None, dtype=None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.proj_in = nn.Linear(dim, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.proj_out = nn.Linear(hidden, dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(F.softplus(gate) * value)


class _TagQueryPool(nn.Module):
    """What both pools share: per-tag queries ``q`` [heads, C, head_dim] and the key/value projection."""

    def __init__(self, dim: int, num_tags: int, heads: int, head_dim: int, eps: float, device, dtype) -> None:
        super().__init__()
        self.heads, self.head_dim, self.eps = heads, head_dim, eps
        self.q = nn.Parameter(torch.empty(heads, num_tags, head_dim, device=device, dtype=dtype))
        self.kv = nn.Linear(dim, 2 * heads * head_dim, bias=False, device=device, dtype=dtype)

    @property
    def inner_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def num_tags(self) -> int:
        return self.q.shape[1]

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B,S,D] → K (RMS-normed per head), V, each [B, heads, S, head_dim]. Shared by all tag chunks."""
        k, v = self.kv(x).chunk(2, dim=-1)
        k, v = self._split(k), self._split(v)
        return F.rms_norm(k, (self.head_dim,), eps=self.eps), v

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B,N,heads·d] → [B,heads,N,d]; channel = h·d + e
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """q [B or 1, heads, n, d] → merged heads [B, n, heads·d]; key_mask [B,S] bool (True = real token)."""
        q = q.expand(k.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :],
                                             scale=1 / math.sqrt(self.head_dim))
        return out.transpose(1, 2).flatten(2)

    def tag_queries(self, index: TagIndex) -> torch.Tensor:
        return (self.q if index is None else self.q[:, index])[None]

    def attention_weights(self, x: torch.Tensor, key_mask: torch.Tensor, index: TagIndex = None) -> torch.Tensor:
        """The first attention's softmax weights, averaged over heads: [B, n, S] (a cheap per-tag token map)."""
        k, _ = self.keys_values(x)
        scores = self.tag_queries(index) @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # [B,heads,n,S]
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return scores.float().softmax(dim=-1).mean(dim=1)


class HydraPool(_TagQueryPool):
    """``rr_hydra`` (JTP-3): ``attn_pool.{q, kv, ff_norm, ff_in, ff_out, out_proj}``; returns logits."""

    def __init__(
        self,
        dim: int = 1152,
        num_tags: int = 7504,
        heads: int = 32,
        head_dim: int = 64,
        ff_dim: int = 6144,
        eps: float = 1e-5,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(dim, num_tags, heads, head_dim, eps, device, dtype)
        inner = heads * head_dim
        self.ff_norm = nn.LayerNorm(inner, eps=eps, device=device, dtype=dtype)
        self.ff_in = nn.Linear(inner, 2 * ff_dim, bias=False, device=device, dtype=dtype)
        self.ff_out = nn.Linear(ff_dim, inner, bias=False, device=device, dtype=dtype)
        self.out_proj = TagGatedProjection(num_tags, inner, device=device, dtype=dtype)

    def tag_features(self, k, v, key_mask, index: TagIndex = None) -> torch.Tensor:
        a = self._attend(self.tag_queries(index), k, v, key_mask)
        gate, value = self.ff_in(self.ff_norm(a)).chunk(2, dim=-1)
        return a + self.ff_out(F.silu(gate) * value)

    def readout(self, h: torch.Tensor, index: TagIndex = None, head: nn.Module | None = None) -> torch.Tensor:
        return self.out_proj(h, index)


class HydraMidBlock(nn.Module):
    """``attn_pool.mid_blocks.i``: re-query the pool's K, V with the tag features, then a gated FF."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_dim: int, eps: float, device=None, dtype=None):
        super().__init__()
        self.heads, self.head_dim, self.eps = heads, head_dim, eps
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=False, device=device, dtype=dtype)
        self.o_proj = nn.Linear(heads * head_dim, dim, bias=False, device=device, dtype=dtype)
        self.ff = GatedFeedForward(dim, ff_dim, eps, device=device, dtype=dtype)

    def forward(self, h: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        q = self.q_proj(h).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
        q = F.rms_norm(q, (self.head_dim,), eps=self.eps)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :],
                                             scale=1 / math.sqrt(self.head_dim))
        h = h + self.o_proj(out.transpose(1, 2).flatten(2))
        return h + self.ff(h)


class Hydra2Pool(_TagQueryPool):
    """``rr_hydra2`` (Hydra 3.5): ``attn_pool.{q, kv, ff, mid_blocks}``; the readout is the model's ``head``."""

    def __init__(
        self,
        dim: int = 1152,
        num_tags: int = 8886,
        heads: int = 32,
        head_dim: int = 64,
        ff_dim: int = 5120,
        mid_blocks: int = 1,
        eps: float = 1e-5,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(dim, num_tags, heads, head_dim, eps, device, dtype)
        inner = heads * head_dim
        self.ff = GatedFeedForward(inner, ff_dim, eps, device=device, dtype=dtype)
        self.mid_blocks = nn.ModuleList(
            HydraMidBlock(inner, heads, head_dim, ff_dim, eps, device=device, dtype=dtype) for _ in range(mid_blocks)
        )

    def tag_features(self, k, v, key_mask, index: TagIndex = None) -> torch.Tensor:
        a = self._attend(self.tag_queries(index), k, v, key_mask)
        h = a + self.ff(a)
        for block in self.mid_blocks:
            h = block(h, k, v, key_mask)
        return h

    def readout(self, h: torch.Tensor, index: TagIndex = None, head: nn.Module | None = None) -> torch.Tensor:
        if head is None:
            raise ValueError("rr_hydra2 reads its logits out with the model's per-tag head")
        return head(h, index)


def hydra_logits(
    pool: HydraPool | Hydra2Pool,
    head: nn.Module | None,
    x: torch.Tensor,
    key_mask: torch.Tensor,
    tags: torch.Tensor | None = None,
    tag_chunk: int = 1024,
) -> torch.Tensor:
    """Logits [B, n] (pool dtype) for ``tags`` (all when None) from tokens x [B,S,D], chunk by chunk.

    K and V are computed once; each chunk then costs O(B · chunk · ff) memory, whatever the vocabulary size.
    """
    key_mask = key_mask.to(device=x.device, dtype=torch.bool)
    k, v = pool.keys_values(x)
    pieces = [
        pool.readout(pool.tag_features(k, v, key_mask, index), index, head)
        for index in tag_chunks(pool.num_tags, tags, tag_chunk)
    ]
    return torch.cat(pieces, dim=1) if pieces else x.new_zeros(x.shape[0], 0)
