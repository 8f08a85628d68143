"""Reading JTP checkpoints (safetensors only) and tags.json, with errors that say what does not fit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ...errors import CheckpointError
from ..header import read_header
from .architecture import VitConfig, build_model, head_variant, infer_config, layout_problems


@dataclass
class LoadedModel:
    model: nn.Module  # returns probabilities [B, num_tags]
    tags: list[str]
    variant: str
    config: VitConfig


def read_shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors header, without reading the weights."""
    return read_header(weights).shapes


def load_tags(path: Path) -> list[str]:
    """tags.json is ``{tag: index}`` with indices 0..N-1; returns the tags in index order."""
    _require_file(path, "tags")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(mapping, dict) or not mapping:
        raise CheckpointError(f"{path} must be a JSON object {{tag: index}} with at least one tag")
    bad = [tag for tag, index in mapping.items() if not isinstance(index, int) or isinstance(index, bool)]
    if bad:
        raise CheckpointError(f"{path}: indices must be integers (first bad entry: {bad[0]!r})")
    tags: list[str | None] = [None] * len(mapping)
    for tag, index in mapping.items():
        if not 0 <= index < len(mapping) or tags[index] is not None:
            raise CheckpointError(f"{path}: indices must be 0..{len(mapping) - 1}, each once (see {tag!r}: {index})")
        tags[index] = tag
    return tags  # type: ignore[return-value]


def load_model(
    weights: Path,
    tags_path: Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Check a checkpoint's layout against the architecture, then load it strictly onto ``device``.

    Each tensor is converted to ``dtype`` on its way to the device, so no full fp32 copy is made there.
    """
    weights, tags_path = Path(weights), Path(tags_path)
    shapes = read_shapes(weights)
    try:
        variant, num_tags = head_variant(shapes)
        config = infer_config(shapes)
    except CheckpointError as error:
        raise CheckpointError(f"{weights}: not a JTP-1 (PILOT) checkpoint: {error}") from None
    tags = load_tags(tags_path)
    if len(tags) != num_tags:
        raise CheckpointError(
            f"{tags_path.name} lists {len(tags)} tags but the head of {weights.name} has {num_tags} outputs: "
            "the tags file belongs to another model"
        )
    model = build_model(config, variant, num_tags, device="meta")
    problems = layout_problems(model, shapes)
    if problems:
        raise CheckpointError(f"{weights.name} does not fit the JTP architecture: " + "; ".join(problems))
    state = _read_tensors(weights, device, dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return LoadedModel(model=model.eval().requires_grad_(False), tags=tags, variant=variant, config=config)


def _read_tensors(weights: Path, device: torch.device | str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    state = {}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as reader:
            for key in reader.keys():  # noqa: SIM118
                tensor = reader.get_tensor(key)
                target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
                state[key] = tensor.to(device=device, dtype=target_dtype)
    except torch.OutOfMemoryError as error:
        raise CheckpointError(f"not enough memory on {device} for {weights.name} in {dtype}: {error}") from error
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{weights}: could not read the weights (damaged file?): {error}") from error
    return state


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"{what} file not found: {path}")
