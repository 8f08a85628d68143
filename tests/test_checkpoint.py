"""Loading checkpoints strictly, and the errors a user sees when one does not fit."""

import json

import pytest
import torch
from checkpoints import build_timm_model, write_checkpoint
from safetensors.torch import load_file, save_file

from jtp_core import CheckpointError, load_tagger
from jtp_core.families.pilot.architecture import SO400M, build_model, head_variant, layout_problems
from jtp_core.families.pilot.checkpoint import load_model

REAL_TAGS = 9083


def test_real_size_pilot_layout_on_meta():
    model = build_model(SO400M, "linear", REAL_TAGS, device="meta")
    state = model.state_dict()
    assert len(state) == 344
    assert state["head.weight"].shape == (REAL_TAGS, 1152) and state["head.bias"].shape == (REAL_TAGS,)
    assert state["pos_embed"].shape == (1, 729, 1152)  # 27x27 patches, no class token
    assert state["patch_embed.proj.weight"].shape == (1152, 3, 14, 14)
    assert state["blocks.26.mlp.fc1.weight"].shape == (4304, 1152)
    assert "attn_pool.latent" in state and "blocks.27.norm1.weight" not in state
    assert all(tensor.is_meta for tensor in state.values())


def test_real_size_pilot2_head_on_meta():
    state = build_model(SO400M, "gated", REAL_TAGS, device="meta").state_dict()
    assert len(state) == 344
    assert state["head.linear.weight"].shape == (2 * REAL_TAGS, 1152)
    assert state["head.linear.bias"].shape == (2 * REAL_TAGS,)


def test_real_size_layout_matches_timm_and_is_read_back_from_shapes():
    """The core's architecture is timm's so400m, and a real checkpoint's shapes infer the real config."""
    import timm

    with torch.device("meta"):
        reference = timm.create_model("vit_so400m_patch14_siglip_384", pretrained=False, num_classes=REAL_TAGS)
    shapes = {key: tuple(t.shape) for key, t in reference.state_dict().items()}
    from jtp_core.families.pilot.architecture import infer_config

    assert infer_config(shapes) == SO400M
    assert head_variant(shapes) == ("linear", REAL_TAGS)
    assert layout_problems(build_model(SO400M, "linear", REAL_TAGS, device="meta"), shapes) == []


@pytest.mark.parametrize("variant", ["linear", "gated"])
def test_variant_told_from_keys_and_outputs_are_probabilities(tmp_path, variant):
    weights, tags = write_checkpoint(tmp_path, variant, 12, seed=3)
    loaded = load_model(weights, tags)
    assert loaded.variant == variant and len(loaded.tags) == 12
    pixels = torch.rand(2, 3, 384, 384) * 2 - 1
    reference = build_timm_model(variant, 12, seed=3)
    with torch.no_grad():
        raw = reference.forward_head(reference.forward_features(pixels), pre_logits=True)
        if variant == "linear":
            expected = torch.sigmoid(reference.head(raw))
        else:
            logits = reference.head.linear(raw)
            expected = torch.sigmoid(logits[:, :12]) * torch.sigmoid(logits[:, 12:])
        assert torch.allclose(loaded.model(pixels), expected, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def _rewrite(tmp_path, edit):
    weights, tags = write_checkpoint(tmp_path / "src", "linear", 16)
    state = load_file(str(weights))
    edit(state)
    target = tmp_path / "model.safetensors"
    save_file(state, str(target))
    return target, tags


def test_missing_key_is_named(tmp_path):
    weights, tags = _rewrite(tmp_path, lambda s: s.pop("blocks.1.attn.proj.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks.1.attn.proj.bias"):
        load_model(weights, tags)


def test_unexpected_key_is_named(tmp_path):
    weights, tags = _rewrite(tmp_path, lambda s: s.update({"cls_token": torch.zeros(1, 1, 72)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): cls_token"):
        load_model(weights, tags)


def test_shape_mismatch_is_named(tmp_path):
    weights, tags = _rewrite(tmp_path, lambda s: s.update({"blocks.1.mlp.fc2.bias": torch.zeros(71)}))
    with pytest.raises(CheckpointError, match=r"blocks.1.mlp.fc2.bias is \[71\], expected \[72\]"):
        load_model(weights, tags)


def test_tags_file_of_another_model(tmp_path):
    weights, tags = write_checkpoint(tmp_path, "linear", 16)
    tags.write_text(json.dumps({f"t{i}": i for i in range(9083)}))
    with pytest.raises(CheckpointError, match="lists 9083 tags but the head .* has 16 outputs"):
        load_model(weights, tags)


def test_truncated_download(tmp_path):
    weights, tags = write_checkpoint(tmp_path, "linear", 16)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated download"):
        load_tagger(tmp_path, device="cpu")


def test_a_plain_vit_is_named_as_no_jtp_checkpoint(tmp_path):
    """A timm ViT-B/16 with a class token (197 tokens) has a head.weight like PILOT's: the error must name the
    file and say it is not a JTP checkpoint, not just that 197 tokens make no square grid (issue #14, item 16)."""
    import timm

    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=3, embed_dim=72, depth=1,
                            num_heads=1)
    save_file({key: value.contiguous() for key, value in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    (tmp_path / "tags.json").write_text('{"a": 0, "b": 1, "c": 2}')
    with pytest.raises(CheckpointError, match=r"vit\.safetensors: not a JTP-1 \(PILOT\) checkpoint: .*197 tokens"):
        load_tagger(tmp_path, device="cpu")


def test_not_a_jtp_checkpoint(tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)}, str(tmp_path / "x.safetensors"))
    (tmp_path / "tags.json").write_text('{"a": 0}')
    with pytest.raises(CheckpointError, match="x.safetensors is not a JTP checkpoint"):
        load_tagger(tmp_path, device="cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('{"a": 0, "b": 0}', "each once"),
        ('{"a": 0, "b": 5}', "indices must be 0..1"),
        ('{"a": "0"}', "must be integers"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_tags_json(tmp_path, content, message):
    weights, tags = write_checkpoint(tmp_path, "linear", 16)
    tags.write_text(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(weights, tags)


def test_tags_keep_index_order(tmp_path):
    weights, tags = write_checkpoint(tmp_path, "linear", 3)
    tags.write_text(json.dumps({"c": 2, "a": 0, "b": 1}))
    assert load_model(weights, tags).tags == ["a", "b", "c"]


def test_half_precision_load_keeps_no_fp32_copy(tmp_path):
    weights, tags = write_checkpoint(tmp_path, "gated", 16)
    loaded = load_model(weights, tags, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
