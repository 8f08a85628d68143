"""Loading a JTP-3 Hydra / Hydra 3.5 checkpoint strictly, with errors that say what does not fit.

Order of work: the header (read by us, nothing allocated) gives the architecture, labels and every tensor's
shape; the model is built on the meta device and its keys and shapes are compared with the file's; only then
are the tensors read, one by one, straight into the target dtype (bf16 weights stay bf16: no float32 copy), and
assigned with a strict ``load_state_dict``. Hydra 3.5's ``validation`` tensor ([C, T, 4] counts) is data for
calibration, not a weight: it is returned separately. Pickled files are never opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ...errors import CheckpointError
from ..header import CheckpointHeader, read_header
from .labels import architecture_variant, background, parse_labels, resize_method
from .model import PATCH_BYTES, HydraConfig, HydraTagger

VALIDATION_KEY = "validation"
BACKBONE_HEAD_DIM = 72  # So400m/16: 16 heads × 72 channels; not visible in the shapes, so fixed by the family
PREVIEW = 5

# LayerNorm eps of the backbone per head variant. timm (1e-6) is what JTP-3's own release runs (it builds the
# backbone with timm); Hydra 3.5's release runs RedRocket's own SigLIP2 code, whose LayerNorms use torch's 1e-5.
# Matching each release's inference code is what parity means here; training's eps is undocumented.
DEFAULT_LN_EPS = {"rr_hydra": 1e-6, "rr_hydra2": 1e-5}


@dataclass
class LoadedHydra:
    model: HydraTagger  # eval mode, no gradients; returns probabilities [B, C]
    tags: list[str]
    categories: list[str] | None
    implications: dict[str, tuple[str, ...]] | None
    validation: torch.Tensor | None  # [C, T, 4] float32 (TP, FP, TN, FN) at t_i = (i+1)/(T+1), Hydra 3.5 only
    metadata: dict[str, str]
    variant: str  # "rr_hydra" (JTP-3) or "rr_hydra2" (Hydra 3.5)
    background: str  # black / grey / white
    resize: str  # lanczos / mks2013-linear


def load_hydra(
    weights: Path | str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    tag_chunk: int = 1024,
    ln_eps: float | None = None,
) -> LoadedHydra:
    """Check a Hydra checkpoint against the architecture, then load it strictly onto ``device`` in ``dtype``."""
    weights = Path(weights)
    header = read_header(weights)
    variant = architecture_variant(header.metadata, weights)
    labels = parse_labels(header.metadata.get("classifier.labels"), variant, weights)
    config = config_from_header(header, variant, ln_eps)
    if len(labels.tags) != config.num_tags:
        raise CheckpointError(
            f"{weights.name}: classifier.labels lists {len(labels.tags)} tags but the head has {config.num_tags} "
            "outputs"
        )
    try:
        model = HydraTagger(config, tag_chunk=tag_chunk, device="meta")
    except (ValueError, AssertionError, RuntimeError) as error:
        raise CheckpointError(
            f"{weights.name}: its shapes do not make a {variant} model ({config}): {error}"
        ) from error
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    _check_layout(weights, expected, header, variant)
    state, validation = _read_tensors(weights, header, device, dtype)
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # nothing the file does not hold may stay unallocated
        raise CheckpointError(f"{weights.name}: no data for {', '.join(leftover[:PREVIEW])}")
    model.eval().requires_grad_(False)
    return LoadedHydra(
        model=model,
        tags=labels.tags,
        categories=labels.categories,
        implications=labels.implications,
        validation=validation,
        metadata=dict(header.metadata),
        variant=variant,
        background=background(header.metadata, variant, weights),
        resize=resize_method(header.metadata, variant, weights),
    )


def config_from_header(header: CheckpointHeader, variant: str, ln_eps: float | None = None) -> HydraConfig:
    """The dimensions, read off the tensor shapes (so tiny test models of the family load the same way)."""
    shapes, path = header.shapes, header.path
    required = ["embeds.proj.weight", "embeds.pos_embed", "blocks.0.mlp.fc1.weight", "attn_pool.q"]
    required.append("attn_pool.ff_in.weight" if variant == "rr_hydra" else "attn_pool.ff.proj_in.weight")
    missing = [key for key in required if key not in shapes]
    if missing:
        raise CheckpointError(f"{path.name}: missing {', '.join(missing)}: not a {variant} checkpoint")
    width, patch_bytes = _dims(shapes, "embeds.proj.weight", 2, path)
    if patch_bytes != PATCH_BYTES or width % BACKBONE_HEAD_DIM:
        raise CheckpointError(
            f"{path.name}: embeds.proj.weight is {list(shapes['embeds.proj.weight'])}; expected "
            f"[k·{BACKBONE_HEAD_DIM}, {PATCH_BYTES}] (16×16 RGB patches)"
        )
    _, grid_h, grid_w, _ = _dims(shapes, "embeds.pos_embed", 4, path)
    mlp_dim, _ = _dims(shapes, "blocks.0.mlp.fc1.weight", 2, path)
    pool_heads, num_tags, pool_head_dim = _dims(shapes, "attn_pool.q", 3, path)
    ff_key = "attn_pool.ff_in.weight" if variant == "rr_hydra" else "attn_pool.ff.proj_in.weight"
    ff_dim = _dims(shapes, ff_key, 2, path)[0] // 2
    depth = 1 + max(int(m.group(1)) for key in shapes if (m := re.match(r"blocks\.(\d+)\.", key)))
    # rr_hydra2 has at least one mid block: with none in the file, its keys are reported missing
    mids = {m.group(1) for key in shapes if (m := re.match(r"attn_pool\.mid_blocks\.(\d+)\.", key))}
    mid_blocks = max(1, len(mids))
    return HydraConfig(
        variant=variant,
        num_tags=num_tags,
        width=width,
        depth=depth,
        num_heads=width // BACKBONE_HEAD_DIM,
        mlp_dim=mlp_dim,
        pos_grid=(grid_h, grid_w),
        ln_eps=DEFAULT_LN_EPS[variant] if ln_eps is None else ln_eps,
        pool_heads=pool_heads,
        pool_head_dim=pool_head_dim,
        ff_dim=ff_dim,
        mid_blocks=mid_blocks,
    )


def _dims(shapes: dict[str, tuple[int, ...]], key: str, rank: int, path: Path) -> tuple[int, ...]:
    shape = shapes[key]
    if len(shape) != rank or min(shape, default=0) < 1:
        raise CheckpointError(f"{path.name}: {key} has shape {list(shape)}; expected {rank} non-empty dimensions")
    return shape


def _check_layout(path: Path, expected: dict[str, tuple[int, ...]], header: CheckpointHeader, variant: str) -> None:
    shapes = dict(header.shapes)
    num_tags = expected["attn_pool.q"][1]
    if VALIDATION_KEY in shapes:
        found = shapes.pop(VALIDATION_KEY)
        if len(found) != 3 or found[0] != num_tags or found[2] != 4 or found[1] < 1:
            raise CheckpointError(
                f"{path.name}: {VALIDATION_KEY} has shape {list(found)}; expected [{num_tags}, T, 4] (per-tag counts)"
            )
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    wrong = [f"{key} {list(shapes[key])} (expected {list(shape)})"
             for key, shape in expected.items() if key in shapes and shapes[key] != shape]
    problems = [f"{what} ({len(items)}): {', '.join(items[:PREVIEW])}{', …' if len(items) > PREVIEW else ''}"
                for what, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                if items]
    if problems:
        raise CheckpointError(f"{path.name} does not fit the {variant} architecture: " + "; ".join(problems))
    floats = ("BF16", "F16", "F32")
    not_float = [f"{key} ({header.dtypes[key]})" for key in expected if header.dtypes[key] not in floats]
    if not_float:
        raise CheckpointError(f"{path.name}: weights must be floating point: {', '.join(not_float[:PREVIEW])}")


def _read_tensors(
    path: Path, header: CheckpointHeader, device: torch.device | str, dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    state: dict[str, torch.Tensor] = {}
    validation = None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            for key in header.shapes:
                tensor = reader.get_tensor(key)
                if key == VALIDATION_KEY:
                    validation = tensor.float()  # counts: kept in float32 on the CPU
                else:  # one tensor at a time, straight into the target dtype and device
                    state[key] = tensor.to(device=device, dtype=dtype)
                del tensor
    except torch.OutOfMemoryError as error:
        raise CheckpointError(f"not enough memory on {device} for {path.name} in {dtype}: {error}") from error
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path}: could not read the weights (damaged file?): {error}") from error
    return state, validation
