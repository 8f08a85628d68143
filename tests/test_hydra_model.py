"""JTP-3 Hydra / Hydra 3.5: fidelity against an independent forward, checkpoint layouts, bad files, CAM.

The reference forward below is written from JTP3_FACTS.md §3-§5 with plain torch ops on the tensors read from
the file (no jtp_core module): patch embedding, the 16×16 position table resized per image (bilinear, antialias),
the ViT blocks, the final LayerNorm, the pool equations and the sigmoid. It sees only an image's real tokens,
so it also checks that padding, masking and batching change nothing.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra_checkpoints import TINY, hydra_state, labels_text, tiny_tag_names, write_hydra_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file, save_file

VARIANTS = ("rr_hydra", "rr_hydra2")
LN_EPS = {"rr_hydra": 1e-6, "rr_hydra2": 1e-5}  # the choice documented in checkpoint.DEFAULT_LN_EPS
GRIDS = [(7, 3), (4, 9), (1, 1), (17, 20)]  # portrait, landscape, one patch, larger than the table both ways
SEQ = 400


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hydra")
    return {v: write_hydra_checkpoint(folder / f"tiny-{v}.safetensors", v, num_tags=9, seed=3) for v in VARIANTS}


def pack(grids, seq=SEQ, seed=0):
    """Random images as NaFlex inputs: row-major tokens (t = gy·gw + gx), zero padding with valid False."""
    gen = torch.Generator().manual_seed(seed)
    patches = torch.zeros(len(grids), seq, 768, dtype=torch.uint8)
    coords = torch.zeros(len(grids), seq, 2, dtype=torch.int32)
    valid = torch.zeros(len(grids), seq, dtype=torch.bool)
    for b, (gh, gw) in enumerate(grids):
        n = gh * gw
        patches[b, :n] = torch.randint(0, 256, (n, 768), generator=gen, dtype=torch.uint8)
        coords[b, :n, 0] = torch.arange(n) // gw
        coords[b, :n, 1] = torch.arange(n) % gw
        valid[b, :n] = True
    return patches, coords, valid


def reference_probs(state, variant, patches, coords, valid, ln_eps, backbone_head_dim=72, antialias=True):
    """One image [S,768] / [S,2] / [S] → probabilities [C], from the equations (float32)."""
    w = {key: value.float() for key, value in state.items()}
    keep = valid.bool()
    tokens, yx = patches[keep].float() / 127.5 - 1, coords[keep].long()
    n = len(tokens)
    gh, gw = int(yx[:, 0].max()) + 1, int(yx[:, 1].max()) + 1
    x = tokens @ w["embeds.proj.weight"].T + w["embeds.proj.bias"]
    table = w["embeds.pos_embed"].permute(0, 3, 1, 2)  # [1, D, 16, 16]
    if (gh, gw) != tuple(table.shape[-2:]):
        table = F.interpolate(table, size=(gh, gw), mode="bilinear", align_corners=False, antialias=antialias)
    x = x + table[0].permute(1, 2, 0)[yx[:, 0], yx[:, 1]]
    dim = x.shape[1]
    heads = dim // backbone_head_dim
    depth = 1 + max(int(key.split(".")[1]) for key in w if key.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (dim,), w[p + "norm1.weight"], w[p + "norm1.bias"], ln_eps)
        qkv = (h @ w[p + "attn.qkv.weight"].T + w[p + "attn.qkv.bias"]).view(n, 3, heads, backbone_head_dim)
        q, k, v = qkv.permute(1, 2, 0, 3)  # channel = part·D + head·72 + e
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(backbone_head_dim), dim=-1) @ v
        x = x + attn.transpose(0, 1).reshape(n, dim) @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
        h = F.layer_norm(x, (dim,), w[p + "norm2.weight"], w[p + "norm2.bias"], ln_eps)
        h = F.gelu(h @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"], approximate="tanh")
        x = x + h @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]
    feats = F.layer_norm(x, (dim,), w["norm.weight"], w["norm.bias"], ln_eps)
    return torch.sigmoid(reference_pool_logits(w, variant, feats))


def _rms(t):
    return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5)


def reference_pool_logits(w, variant, feats):
    """Pool equations (§4/§5) on tokens [n, D] → logits [C]."""
    q = w["attn_pool.q"]
    heads, num_tags, head_dim = q.shape
    inner = heads * head_dim
    kv = feats @ w["attn_pool.kv.weight"].T
    k = _rms(kv[:, :inner].view(-1, heads, head_dim).transpose(0, 1))  # [heads, n, d]
    v = kv[:, inner:].view(-1, heads, head_dim).transpose(0, 1)

    def attend(queries):  # [heads, C, d] → [C, inner]
        weights = torch.softmax(queries @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        return (weights @ v).transpose(0, 1).reshape(num_tags, inner)

    a = attend(q)
    if variant == "rr_hydra":
        u = F.layer_norm(a, (inner,), w["attn_pool.ff_norm.weight"], w["attn_pool.ff_norm.bias"], 1e-5)
        gate, value = (u @ w["attn_pool.ff_in.weight"].T).chunk(2, dim=-1)
        h = a + (F.silu(gate) * value) @ w["attn_pool.ff_out.weight"].T
        o = torch.einsum("cd,cdk->ck", h, w["attn_pool.out_proj.weight"])
        return F.silu(o[:, 0]) * o[:, 1]

    def ff(t, prefix):
        gate, value = (F.layer_norm(t, (inner,), eps=1e-5) @ w[prefix + "proj_in.weight"].T).chunk(2, dim=-1)
        return (F.softplus(gate) * value) @ w[prefix + "proj_out.weight"].T

    h = a + ff(a, "attn_pool.ff.")
    mids = sorted({key.split(".")[2] for key in w if key.startswith("attn_pool.mid_blocks.")})
    for m in mids:
        p = f"attn_pool.mid_blocks.{m}."
        q2 = _rms((h @ w[p + "q_proj.weight"].T).view(num_tags, heads, head_dim).transpose(0, 1))
        h = h + attend(q2) @ w[p + "o_proj.weight"].T
        h = h + ff(h, p + "ff.")
    return (h * w["head.weight"]).sum(-1)


# --- fidelity ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_matches_the_reference_and_batching_changes_nothing(checkpoints, variant):
    from jtp_core.families.hydra.checkpoint import load_hydra

    loaded = load_hydra(checkpoints[variant], dtype=torch.float32)
    state = load_file(str(checkpoints[variant]))
    patches, coords, valid = pack(GRIDS)
    with torch.inference_mode():
        batch = loaded.model(patches, coords, valid)
        alone = torch.cat([loaded.model(patches[b : b + 1], coords[b : b + 1], valid[b : b + 1])
                           for b in range(len(GRIDS))])
    assert batch.dtype == torch.float32 and batch.shape == (len(GRIDS), 9)
    for b in range(len(GRIDS)):
        expected = reference_probs(state, variant, patches[b], coords[b], valid[b], LN_EPS[variant])
        assert (batch[b] - expected).abs().max() <= 1e-5, f"{variant} image {b} grid {GRIDS[b]}"
    assert (batch - alone).abs().max() <= 1e-5
    assert batch.std() > 0.05  # not saturated: the comparison means something
    # the antialiased table resize matters for small grids: plain bilinear would be visibly off
    plain = reference_probs(state, variant, patches[0], coords[0], valid[0], LN_EPS[variant], antialias=False)
    assert (plain - batch[0]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_batch_equals_each_image_alone(checkpoints, variant):
    from jtp_core.families.hydra.checkpoint import load_hydra

    loaded = load_hydra(checkpoints[variant], dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())  # no float32 copy kept
    patches, coords, valid = pack(GRIDS)
    with torch.inference_mode():
        batch = loaded.model(patches, coords, valid)
        # alone, each image is padded to the same sequence length, as the preprocessor pads every image
        alone = torch.cat([loaded.model(patches[b : b + 1], coords[b : b + 1], valid[b : b + 1])
                           for b in range(len(GRIDS))])
    assert batch.dtype == torch.float32
    assert (batch - alone).abs().max() <= 1e-3
    state = load_file(str(checkpoints[variant]))
    expected = torch.stack([reference_probs(state, variant, patches[b], coords[b], valid[b], LN_EPS[variant])
                            for b in range(len(GRIDS))])
    assert (batch - expected).abs().max() < 0.05  # bf16 rounding only


def test_padding_length_does_not_change_results(checkpoints):
    from jtp_core.families.hydra.checkpoint import load_hydra

    model = load_hydra(checkpoints["rr_hydra2"], dtype=torch.float32).model
    short = pack(GRIDS[:3], seq=64)  # longest image: 36 tokens
    long = pack(GRIDS[:3], seq=1024)
    with torch.inference_mode():
        a, b = model(*short), model(*long)
    assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_bf16_normalisation_rounds_each_step():
    """uint8 → bf16, ÷127.5 rounded in bf16, −1 rounded in bf16 (facts §6), seen at the embedding's input."""
    from jtp_core.families.hydra.model import HydraConfig, HydraTagger

    model = HydraTagger(HydraConfig.released("rr_hydra", 3, width=144, depth=1, num_heads=2, mlp_dim=8, pool_heads=2,
                                             pool_head_dim=8, ff_dim=8), dtype=torch.bfloat16).eval()
    values = torch.arange(256, dtype=torch.float64)
    stepwise = ((values / 127.5).to(torch.bfloat16).double() - 1).to(torch.bfloat16)
    at_once = (values / 127.5 - 1).to(torch.bfloat16)
    assert (stepwise != at_once).sum() == 128  # the two roundings really differ (facts §6)
    seen = []
    handle = model.embeds.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    patches = values.to(torch.uint8).repeat(3)[:768].view(1, 1, 768)
    try:
        with torch.inference_mode():
            model(patches, torch.zeros(1, 1, 2, dtype=torch.int32), torch.ones(1, 1, dtype=torch.bool))
    finally:
        handle.remove()
    (x,) = seen
    assert x.dtype == torch.bfloat16
    assert torch.equal(x.view(-1), stepwise.repeat(3)[:768])


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunked_head_equals_unchunked(checkpoints, variant):
    from jtp_core.families.hydra.checkpoint import load_hydra

    model = load_hydra(checkpoints[variant], dtype=torch.float32).model
    patches, coords, valid = pack(GRIDS[:2])
    with torch.inference_mode():
        features, mask, _, _ = model.features(patches, coords, valid)
        whole = model.head_logits(features, mask, tag_chunk=0)
        picked = torch.tensor([7, 2, 5])
        for chunk in (1, 2, 4, 8, 1024):
            # float32: CPU GEMMs round a row differently for very small row counts (≤ a few ulps)
            assert (model.head_logits(features, mask, tag_chunk=chunk) - whole).abs().max() <= 1e-5, chunk
        assert (model.head_logits(features, mask, tags=picked, tag_chunk=2) - whole[:, picked]).abs().max() <= 1e-5
        # in bf16 (the production dtype) chunking is bit-identical
        model = model.to(torch.bfloat16)
        features = features.to(torch.bfloat16)
        whole = model.head_logits(features, mask, tag_chunk=0)
        assert whole.dtype == torch.bfloat16
        for chunk in (1, 2, 4, 8):
            assert torch.equal(model.head_logits(features, mask, tag_chunk=chunk), whole), chunk
        assert torch.equal(model.head_logits(features, mask, tags=picked, tag_chunk=2), whole[:, picked])


# --- real-size layouts on the meta device (nothing allocated) -----------------------------------------------

def _backbone_table():
    table = {"embeds.pos_embed": (1, 16, 16, 1152), "embeds.proj.weight": (1152, 768), "embeds.proj.bias": (1152,),
             "norm.weight": (1152,), "norm.bias": (1152,)}
    for i in range(27):
        p = f"blocks.{i}."
        table.update({p + "norm1.weight": (1152,), p + "norm1.bias": (1152,), p + "norm2.weight": (1152,),
                      p + "norm2.bias": (1152,), p + "attn.qkv.weight": (3456, 1152), p + "attn.qkv.bias": (3456,),
                      p + "attn.proj.weight": (1152, 1152), p + "attn.proj.bias": (1152,),
                      p + "mlp.fc1.weight": (4304, 1152), p + "mlp.fc1.bias": (4304,),
                      p + "mlp.fc2.weight": (1152, 4304), p + "mlp.fc2.bias": (1152,)})
    return table


HEAD_TABLES = {
    "rr_hydra": lambda c: {"attn_pool.q": (32, c, 64), "attn_pool.kv.weight": (4096, 1152),
                           "attn_pool.ff_norm.weight": (2048,), "attn_pool.ff_norm.bias": (2048,),
                           "attn_pool.ff_in.weight": (12288, 2048), "attn_pool.ff_out.weight": (2048, 6144),
                           "attn_pool.out_proj.weight": (c, 2048, 2)},
    "rr_hydra2": lambda c: {"attn_pool.q": (32, c, 64), "attn_pool.kv.weight": (4096, 1152),
                            "attn_pool.ff.proj_in.weight": (10240, 2048), "attn_pool.ff.proj_out.weight": (2048, 5120),
                            "attn_pool.mid_blocks.0.q_proj.weight": (2048, 2048),
                            "attn_pool.mid_blocks.0.o_proj.weight": (2048, 2048),
                            "attn_pool.mid_blocks.0.ff.proj_in.weight": (10240, 2048),
                            "attn_pool.mid_blocks.0.ff.proj_out.weight": (2048, 5120),
                            "head.weight": (c, 2048)},
}


@pytest.mark.parametrize(("variant", "num_tags"), [("rr_hydra", 7504), ("rr_hydra2", 8886)])
def test_real_size_layout_and_parameter_counts(variant, num_tags):
    from jtp_core.families.hydra.model import HydraConfig, HydraTagger

    model = HydraTagger(HydraConfig.released(variant, num_tags), device="meta")
    shapes = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    assert shapes == {**_backbone_table(), **HEAD_TABLES[variant](num_tags)}
    assert all(p.is_meta for p in model.parameters())
    backbone = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("attn_pool", "head")))
    total = sum(p.numel() for p in model.parameters())
    assert backbone == 412_649_712
    if variant == "rr_hydra":
        assert len(shapes) == 336 and total - backbone == 88_576_000
    else:
        assert len(shapes) + 1 == 339 and total == 488_671_472 + 4096 * num_tags  # + validation in the file


# --- labels and metadata -------------------------------------------------------------------------------------

def test_labels_validation_and_settings_are_read_from_the_file(checkpoints, tmp_path):
    from jtp_core.families.hydra.checkpoint import load_hydra

    jtp3 = load_hydra(checkpoints["rr_hydra"], dtype=torch.float32)
    assert (jtp3.variant, jtp3.tags, jtp3.categories, jtp3.implications, jtp3.validation) == (
        "rr_hydra", tiny_tag_names(9), None, None, None)
    assert (jtp3.background, jtp3.resize) == ("black", "lanczos")
    assert jtp3.metadata["modelspec.title"] == "TINY rr_hydra"

    hydra = load_hydra(checkpoints["rr_hydra2"], dtype=torch.float32)
    names = tiny_tag_names(9)
    assert hydra.tags == names and hydra.categories[:4] == ["general", "species", "character", "meta"]
    assert hydra.implications == {names[0]: (names[1], names[2]), names[3]: (names[4], names[5]),
                                  names[6]: (names[7], names[8])}
    assert hydra.validation.shape == (9, 9, 4) and hydra.validation.dtype == torch.float32
    assert "validation" not in hydra.model.state_dict()
    assert (hydra.background, hydra.resize) == ("grey", "mks2013-linear")

    plain = write_hydra_checkpoint(tmp_path / "plain.safetensors", "rr_hydra2", 4,
                                   metadata={"classifier.background": None, "classifier.resize": None})
    loaded = load_hydra(plain)
    assert (loaded.background, loaded.resize) == ("black", "lanczos")


def test_header_reader_reports_shapes_dtypes_and_metadata(checkpoints):
    from jtp_core.families.header import read_header

    header = read_header(checkpoints["rr_hydra2"])
    assert header.shapes["attn_pool.q"] == (4, 9, 8) and header.dtypes["attn_pool.q"] == "BF16"
    assert header.shapes["validation"] == (9, 9, 4) and header.dtypes["validation"] == "F32"
    assert header.metadata["modelspec.architecture"].endswith("+rr_hydra2")
    assert header.file_size == checkpoints["rr_hydra2"].stat().st_size


# --- bad files: each a CheckpointError naming the file and the problem -----------------------------------------

def _truncate(src: Path, dst: Path, size: int) -> Path:
    dst.write_bytes(src.read_bytes()[:size])
    return dst


def _header_length(path: Path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def _bad_files(good: Path, folder: Path):
    state = hydra_state("rr_hydra2", 6)
    wrong = dict(state)
    wrong["attn_pool.kv.weight"] = torch.zeros(64, 100)
    missing = {k: v for k, v in state.items() if k != "attn_pool.mid_blocks.0.o_proj.weight"}
    extra = {**state, "attn_pool.latent": torch.zeros(1, 4)}
    header_end = 8 + _header_length(good)
    invalid_json = bytearray(good.read_bytes())
    invalid_json[8:12] = b"{{{{"
    (folder / "json.safetensors").write_bytes(bytes(invalid_json))
    (folder / "model.ckpt").write_bytes(b"\x80\x04pickle")
    return {
        "truncated header": (_truncate(good, folder / "head.safetensors", header_end - 100), "truncated"),
        "truncated data": (_truncate(good, folder / "data.safetensors", header_end + 1000), "truncated"),
        "tiny file": (_truncate(good, folder / "tiny.safetensors", 5), "truncated"),
        "invalid json": (folder / "json.safetensors", "not valid JSON"),
        "pickle": (folder / "model.ckpt", "pickled files are never opened"),
        "missing file": (folder / "absent.safetensors", "not found"),
        "no architecture": (write_hydra_checkpoint(folder / "noarch.safetensors", "rr_hydra", 6,
                                                   metadata={"modelspec.architecture": None}),
                            "'modelspec.architecture' is missing"),
        "other architecture": (write_hydra_checkpoint(folder / "other.safetensors", "rr_hydra", 6,
                                                      metadata={"modelspec.architecture": "vit_so400m+rr_slim"}),
                               "modelspec.architecture is 'vit_so400m+rr_slim'"),
        "swapped architecture": (write_hydra_checkpoint(folder / "swap.safetensors", "rr_hydra", 6, metadata={
            "modelspec.architecture": "naflexvit_so400m_patch16_siglip+rr_hydra2",
            "classifier.labels": labels_text("rr_hydra2", tiny_tag_names(6))}),
            "missing attn_pool.ff.proj_in.weight: not a rr_hydra2 checkpoint"),
        "labels count": (write_hydra_checkpoint(folder / "labels.safetensors", "rr_hydra", 6,
                                                tags=tiny_tag_names(5)), "lists 5 tags but the head has 6 outputs"),
        "no labels": (write_hydra_checkpoint(folder / "nolabels.safetensors", "rr_hydra", 6,
                                             metadata={"classifier.labels": None}), "'classifier.labels'"),
        "missing key": (write_hydra_checkpoint(folder / "missing.safetensors", "rr_hydra2", 6, state=missing),
                        "missing (1): attn_pool.mid_blocks.0.o_proj.weight"),
        "unexpected key": (write_hydra_checkpoint(folder / "extra.safetensors", "rr_hydra2", 6, state=extra),
                           "unexpected (1): attn_pool.latent"),
        "wrong shape": (write_hydra_checkpoint(folder / "shape.safetensors", "rr_hydra2", 6, state=wrong),
                        "attn_pool.kv.weight [64, 100] (expected [64, 144])"),
        "bad background": (write_hydra_checkpoint(folder / "bg.safetensors", "rr_hydra2", 6,
                                                  metadata={"classifier.background": "pink"}),
                           "classifier.background is 'pink'"),
        "bad resize": (write_hydra_checkpoint(folder / "rs.safetensors", "rr_hydra2", 6,
                                              metadata={"classifier.resize": "nearest"}),
                       "classifier.resize is 'nearest'"),
    }


def test_bad_files_are_clear_checkpoint_errors(checkpoints, tmp_path):
    from jtp_core.errors import CheckpointError
    from jtp_core.families.hydra.checkpoint import load_hydra

    for problem, (path, words) in _bad_files(checkpoints["rr_hydra2"], tmp_path).items():
        with pytest.raises(CheckpointError) as caught:
            load_hydra(path)
        message = str(caught.value)
        assert path.name in message and words in message, f"{problem}: {message}"


def test_bad_validation_shape_and_label_lines(tmp_path):
    from jtp_core.errors import CheckpointError
    from jtp_core.families.hydra.checkpoint import load_hydra
    from jtp_core.families.hydra.labels import parse_labels

    state = hydra_state("rr_hydra2", 4)
    path = write_hydra_checkpoint(tmp_path / "v.safetensors", "rr_hydra2", 4, state=state)
    tensors = load_file(str(path))
    tensors["validation"] = torch.zeros(3, 9, 4)
    with safe_open(str(path), "pt") as reader:
        metadata = reader.metadata()
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"v2\.safetensors: validation has shape \[3, 9, 4\]"):
        load_hydra(tmp_path / "v2.safetensors")
    where = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match=r"x\.safetensors: classifier\.labels line 2 must be 'tag category"):
        parse_labels("fox general\nwolf", "rr_hydra2", where)
    with pytest.raises(CheckpointError, match="line 1 must be one tag name"):
        parse_labels("fox general", "rr_hydra", where)
    with pytest.raises(CheckpointError, match="lists tag 'fox' twice"):
        parse_labels("fox\nfox\n", "rr_hydra", where)
    assert parse_labels("a\nb\n", "rr_hydra", where).tags == ["a", "b"]


# --- CAM --------------------------------------------------------------------------------------------------------

RED, BLUE, GRAY = (255, 0, 0), (0, 0, 255), (128, 128, 128)
RED_TAG, BLUE_TAG = 3, 4


def region_state(variant: str, num_tags: int = 6) -> dict[str, torch.Tensor]:
    """Tag 3 answers mean(R − G) over the image, tag 4 mean(B − G); the blocks are identities.

    Token channels: 0 = mean(R − G) − 1 (+1 on a red patch, −1 elsewhere), 1 = 1, 2 = mean(B − G) − 1. The pool's
    values (head 1) carry channels 0-2; head 0's keys carry channels 0 and 2 so that the red tag's query attends
    to red patches and the blue tag's to blue ones; the other heads attend uniformly.
    """
    state = {key: torch.zeros_like(value) for key, value in hydra_state(variant, num_tags).items()}
    proj = state["embeds.proj.weight"]  # [D, 768], input channel = (py·16 + px)·3 + rgb
    pixels = torch.arange(256) * 3
    proj[0, pixels], proj[0, pixels + 1] = 1 / 256, -1 / 256
    proj[2, pixels + 2], proj[2, pixels + 1] = 1 / 256, -1 / 256
    state["embeds.proj.bias"][[0, 1, 2]] = torch.tensor([-1.0, 1.0, -1.0])
    for key in state:
        if key.endswith(("norm1.weight", "norm2.weight")) or key in ("norm.weight", "attn_pool.ff_norm.weight"):
            state[key].fill_(1.0)
    inner, head_dim = TINY["pool_heads"] * TINY["pool_head_dim"], TINY["pool_head_dim"]
    kv = state["attn_pool.kv.weight"]
    kv[0, 0] = kv[1, 2] = 1.0  # K head 0 = (ch0, ch2)
    for c in range(3):
        kv[inner + head_dim + c, c] = 1.0  # V head 1 = (ch0, ch1, ch2)
    q = state["attn_pool.q"]
    q[0, RED_TAG, 0] = q[0, BLUE_TAG, 1] = 4.0
    if variant == "rr_hydra":  # logit = silu(o0) · o1 with o0 = 2 (from the constant channel), o1 = A(channel)
        out = state["attn_pool.out_proj.weight"]
        out[RED_TAG, head_dim + 1, 0] = out[BLUE_TAG, head_dim + 1, 0] = 2.0
        out[RED_TAG, head_dim + 0, 1] = out[BLUE_TAG, head_dim + 2, 1] = 1.0
    else:
        state["head.weight"][RED_TAG, head_dim + 0] = state["head.weight"][BLUE_TAG, head_dim + 2] = 1.0
    return state


def region_inputs():
    """Two images as token grids: a 6×10 landscape and an 8×5 portrait with red and blue blocks."""
    layouts = [((6, 10), (slice(1, 4), slice(2, 6)), (slice(3, 6), slice(7, 10))),
               ((8, 5), (slice(5, 8), slice(0, 2)), (slice(0, 2), slice(3, 5)))]
    patches, coords, valid = pack([grid for grid, _, _ in layouts], seq=96)
    colours = []
    for b, ((gh, gw), red, blue) in enumerate(layouts):
        grid = torch.tensor(GRAY).expand(gh, gw, 3).clone()
        grid[red], grid[blue] = torch.tensor(RED), torch.tensor(BLUE)
        colours.append(grid)
        patches[b, : gh * gw] = grid.view(gh * gw, 1, 3).expand(-1, 256, -1).reshape(gh * gw, 768).to(torch.uint8)
    return (patches, coords, valid), layouts


def _region_model(tmp_path, variant, dtype):
    from jtp_core.families.hydra.checkpoint import load_hydra

    path = write_hydra_checkpoint(tmp_path / f"region-{variant}.safetensors", variant, 6, state=region_state(variant))
    with torch.inference_mode():  # as in ComfyUI: the weights become inference tensors
        return load_hydra(path, dtype=dtype).model


def _assert_region_lit(grid: torch.Tensor, region, label):
    inside = torch.zeros_like(grid, dtype=torch.bool)
    inside[region] = True
    assert grid[inside].min() > grid[~inside].max(), f"{label}: region not the hottest\n{grid}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_cam_and_attention_maps_light_the_tags_region(tmp_path, variant):
    from jtp_core.families.hydra.cam import attention_maps, multilayer_cam

    model = _region_model(tmp_path, variant, torch.float32)
    inputs, layouts = region_inputs()
    tags = torch.tensor([RED_TAG, BLUE_TAG])
    with torch.inference_mode():
        cam = multilayer_cam(model, *inputs, tags, depth=2)
        att = attention_maps(model, *inputs, tags)
        probs = model(*inputs)
    for result in (cam, att):
        assert torch.equal(result.tags, tags.expand(2, -1))
        assert torch.allclose(result.scores, probs[:, tags], atol=1e-6)
        for b, ((gh, gw), red, blue) in enumerate(layouts):
            maps = result.maps[b]
            assert maps.shape == (2, gh, gw) and maps.dtype == torch.float32
            _assert_region_lit(maps[0], red, f"{variant} image {b} red")
            _assert_region_lit(maps[1], blue, f"{variant} image {b} blue")
    for b in range(2):  # attention weights: a distribution over the image's tokens
        assert torch.allclose(att.maps[b].sum(dim=(1, 2)), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cam_leaves_the_shared_model_exactly_as_it_was(tmp_path, dtype):
    from jtp_core.families.hydra.cam import attention_maps, multilayer_cam

    model = _region_model(tmp_path, "rr_hydra2", dtype)
    inputs, layouts = region_inputs()
    before = {name: (p.requires_grad, p.dtype, p.clone()) for name, p in model.named_parameters()}
    with torch.inference_mode():
        inside = multilayer_cam(model, *inputs, torch.tensor([[RED_TAG], [BLUE_TAG]]))
        attention_maps(model, *inputs, torch.tensor([RED_TAG]))
    outside = multilayer_cam(model, *inputs, torch.tensor([[RED_TAG], [BLUE_TAG]]))  # and outside inference mode
    assert all(torch.isfinite(m).all() for m in inside.maps)
    _assert_region_lit(inside.maps[0][0], layouts[0][1], "red")
    _assert_region_lit(inside.maps[1][0], layouts[1][2], "blue")
    assert all(torch.equal(a, b) for a, b in zip(inside.maps, outside.maps, strict=True))
    for name, p in model.named_parameters():
        requires_grad, dtype_before, value = before[name]
        assert (p.requires_grad, p.dtype, p.grad) == (requires_grad, dtype_before, None), name
        assert torch.equal(p, value), name
    for module in model.modules():
        assert not any((module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                        module._backward_pre_hooks)), f"hook left on {type(module).__name__}"
    assert not model.training
    with torch.inference_mode():
        assert model(*inputs).shape == (2, 6)  # still usable for plain tagging


@pytest.mark.parametrize("variant", VARIANTS)
def test_backbone_layernorm_eps_is_each_releases_choice(checkpoints, variant):
    """JTP-3's release runs timm (eps 1e-6); Hydra 3.5's runs RedRocket's own SigLIP2 (torch's 1e-5).
    The pool's norms are 1e-5 in both. An explicit ``ln_eps`` overrides the backbone's."""
    from jtp_core.families.hydra.checkpoint import load_hydra

    model = load_hydra(checkpoints[variant], dtype=torch.float32).model
    backbone = [m.eps for part in (model.embeds, model.blocks, model.norm) for m in part.modules()
                if isinstance(m, torch.nn.LayerNorm)]
    assert len(backbone) == 2 * TINY["depth"] + 1 and set(backbone) == {LN_EPS[variant]}
    pool = {m.eps for m in model.attn_pool.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert pool == {1e-5} and model.attn_pool.eps == 1e-5
    override = load_hydra(checkpoints[variant], dtype=torch.float32, ln_eps=1e-4).model
    assert {m.eps for m in override.blocks.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-4}
