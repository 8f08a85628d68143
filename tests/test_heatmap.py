"""Tag heatmaps: alignment with the original image, model left untouched, node, CLI, example workflow.

Alignment is checked on a tiny checkpoint whose weights are set by hand so that tag ``red_hat`` responds
only to red patches and ``blue_eyes`` only to blue ones: every patch token carries mean(R - G) and mean(B - G)
(minus a margin), the blocks are identities, the attention pool averages, and the head reads one channel
per tag. Grad-CAM of such a model is 1 on the coloured patches and 0 elsewhere, so the mask must light up
exactly where the coloured blocks were drawn in the original image, whatever its shape.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import build_timm_model, tiny_tags
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
SIZE, PATCH, GRID = 384, 14, 27
RED_HAT, BLUE_EYES = 6, 5  # indices in tiny_tags()
RED, BLUE, GRAY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


def write_region_checkpoint(folder: Path, num_tags: int = 16) -> Path:
    model = build_timm_model("linear", num_tags)
    dim = model.embed_dim
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        proj = model.patch_embed.proj.weight  # [dim, 3, 14, 14]
        area = PATCH * PATCH
        proj[0, 0], proj[0, 1] = 1 / area, -1 / area  # channel 0: mean(R - G), in [-1, 1] units
        proj[1, 2], proj[1, 1] = 1 / area, -1 / area  # channel 1: mean(B - G)
        model.patch_embed.proj.bias[:2] = -1.0  # margin: a full-colour patch gives +1, gray gives -1
        for norm in (model.norm, model.attn_pool.norm, *(n for b in model.blocks for n in (b.norm1, b.norm2))):
            norm.weight.fill_(1.0)
        pool = model.attn_pool  # q = 0 → uniform attention; v and proj pass channels 0 and 1 through
        pool.kv.weight[dim, 0] = pool.kv.weight[dim + 1, 1] = 1.0
        pool.proj.weight[0, 0] = pool.proj.weight[1, 1] = 1.0
        model.head.weight[RED_HAT, 0] = model.head.weight[BLUE_EYES, 1] = 1.0
        model.head.bias.fill_(4.0)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "region-vit_so400m_patch14_siglip_384.safetensors"))
    (folder / "tags.json").write_text(json.dumps({tag: i for i, tag in enumerate(tiny_tags(num_tags))}))
    return folder


@pytest.fixture(scope="module")
def region_checkpoint(tmp_path_factory) -> Path:
    return write_region_checkpoint(tmp_path_factory.mktemp("models") / "REGION")


@pytest.fixture(scope="module")
def region_tagger(region_checkpoint):
    from jtp_core import load_tagger

    with torch.inference_mode():  # as in ComfyUI: the weights become inference tensors
        return load_tagger(region_checkpoint, device="cpu")


# --- test images, with their geometry worked out independently of jtp_core ---------------------------------

def _fitted(height: int, width: int) -> tuple[int, int, int, int]:
    """(h, w, top, left) of the image inside the padded 384 square."""
    scale = min(SIZE / height, SIZE / width)
    h, w = (min(round(height * scale), SIZE), min(round(width * scale), SIZE)) if scale != 1 else (height, width)
    return h, w, (SIZE - h) // 2, (SIZE - w) // 2


def _cells_to_box(height, width, rows, cols, to_edge=""):
    """Patch cells [r0, r1) x [c0, c1) of the padded square → original pixel box (y0, y1, x0, x1)."""
    h, w, top, left = _fitted(height, width)
    y0, y1 = (round((PATCH * r - top) * height / h) for r in rows)
    x0, x1 = (round((PATCH * c - left) * width / w) for c in cols)
    return y0, height if to_edge == "bottom" else y1, x0, width if to_edge == "right" else x1


# (height, width, red cells, blue cells touching the unseen border, which border)
CASES = {
    "landscape": (350, 700, ((9, 14), (5, 12)), ((8, 12), (22, GRID)), "right"),
    "portrait": (500, 300, ((4, 11), (8, 14)), ((22, GRID), (15, 20)), "bottom"),
    "square": (200, 200, ((3, 9), (4, 12)), ((15, 22), (20, GRID)), "right"),
}


def _case_image(name):
    height, width, red_cells, blue_cells, edge = CASES[name]
    red = _cells_to_box(height, width, *red_cells)
    blue = _cells_to_box(height, width, *blue_cells, to_edge=edge)
    pixels = np.full((height, width, 3), GRAY, dtype=np.uint8)
    for (y0, y1, x0, x1), color in ((red, RED), (blue, BLUE)):
        pixels[y0:y1, x0:x1] = color
    return Image.fromarray(pixels), red, blue, edge


def _patch_px(height, width):
    h, w, _, _ = _fitted(height, width)
    return PATCH * max(height / h, width / w)  # one patch, in original pixels


def assert_lit_exactly(mask: torch.Tensor, box, label="", edges=True):
    """The mask is ~1 inside the box, ~0 a patch away from it, and (for boxes on patch boundaries, ``edges``)
    crosses 0.5 at the box's edges."""
    height, width = mask.shape
    y0, y1, x0, x1 = box
    margin = math.ceil(_patch_px(height, width)) + 1
    assert mask[y0 + margin : y1 - margin, x0 + margin : x1 - margin].min() > 0.9, f"{label}: box not lit"
    outside = mask.clone()
    outside[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = 0
    assert outside.max() < 0.1, f"{label}: heat outside the box at {divmod(int(outside.argmax()), width)}"
    if not edges:
        return
    h, w, _, _ = _fitted(height, width)
    tolerance = max(height / h, width / w) + 1  # one pixel of the fitted image, plus rounding
    row, col = mask[(y0 + y1) // 2], mask[:, (x0 + x1) // 2]
    lit_x, lit_y = row.ge(0.5).nonzero().flatten(), col.ge(0.5).nonzero().flatten()
    assert abs(lit_x[0].item() - x0) <= tolerance and abs(lit_x[-1].item() + 1 - x1) <= tolerance, (
        f"{label}: lit columns {lit_x[0].item()}..{lit_x[-1].item() + 1}, box {x0}..{x1}")
    assert abs(lit_y[0].item() - y0) <= tolerance and abs(lit_y[-1].item() + 1 - y1) <= tolerance, (
        f"{label}: lit rows {lit_y[0].item()}..{lit_y[-1].item() + 1}, box {y0}..{y1}")


def assert_unseen_border_dark(mask: torch.Tensor, box, edge: str, label=""):
    """Pixels the patch grid never sees (past 378 of 384) get 0, right next to fully lit ones."""
    height, width = mask.shape
    h, w, top, left = _fitted(height, width)
    y0, y1, x0, x1 = box
    margin = math.ceil(_patch_px(height, width)) + 1
    if edge == "right":
        seen = [x for x in range(width) if left + (x + 0.5) * w / width < GRID * PATCH]
        last = seen[-1]
        band = mask[y0 + margin : y1 - margin]
        assert last < width - 1 and band[:, last + 1 :].max() == 0, f"{label}: unseen columns not dark"
        assert band[:, x0 + margin : last + 1].min() > 0.9, f"{label}: seen columns next to the border not lit"
    else:
        seen = [y for y in range(height) if top + (y + 0.5) * h / height < GRID * PATCH]
        last = seen[-1]
        band = mask[:, x0 + margin : x1 - margin]
        assert last < height - 1 and band[last + 1 :].max() == 0, f"{label}: unseen rows not dark"
        assert band[y0 + margin : last + 1].min() > 0.9, f"{label}: seen rows next to the border not lit"


# --- core --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_heatmap_lights_the_drawn_region_on_the_original_image(region_tagger, case):
    from jtp_core.heatmaps.heatmap import tag_heatmaps

    image, red, blue, edge = _case_image(case)
    with torch.inference_mode():  # ComfyUI runs nodes like this
        (result,) = tag_heatmaps(region_tagger, [image], "red hat, blue_eyes")
    assert result.tags == ["red_hat", "blue_eyes"]
    assert result.maps.shape == (2, image.height, image.width) and result.maps.dtype == torch.float32
    assert result.maps.min() >= 0 and result.maps.max() <= 1
    red_map, blue_map = result.maps
    assert_lit_exactly(red_map, red, f"{case} red")
    assert blue_map[red[0] : red[1], red[2] : red[3]].max() < 0.05  # each tag has its own map
    assert_unseen_border_dark(blue_map, blue, edge, f"{case} blue")


def test_scores_are_the_models_probabilities_and_top_n_picks_per_image(region_tagger):
    from jtp_core.heatmaps.heatmap import tag_heatmaps

    landscape, *_ = _case_image("landscape")
    square, *_ = _case_image("square")
    images = [landscape, square, landscape.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    results = tag_heatmaps(region_tagger, images, "top 2", batch_size=2)
    probs = region_tagger.predict_pils(images)
    for result, row, image in zip(results, probs, images, strict=True):
        expected = torch.topk(row, 2).indices.tolist()
        assert result.tags == [region_tagger.tags[i] for i in expected]
        assert result.scores == pytest.approx(row[expected].tolist(), abs=1e-5)
        assert result.maps.shape == (2, image.height, image.width)


def test_model_is_left_exactly_as_it_was(region_tagger):
    from jtp_core.heatmaps.heatmap import tag_heatmaps

    model = region_tagger.model
    before = {name: (p.requires_grad, p.dtype, p.clone()) for name, p in model.named_parameters()}
    image, *_ = _case_image("square")
    with torch.inference_mode():
        tag_heatmaps(region_tagger, [image], "red_hat, top 1")
    tag_heatmaps(region_tagger, [image], "blue eyes")  # and outside inference mode
    for name, p in model.named_parameters():
        requires_grad, dtype, value = before[name]
        assert (p.requires_grad, p.dtype, p.grad) == (requires_grad, dtype, None), name
        assert torch.equal(p, value), name
    for module in model.modules():
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                 module._backward_pre_hooks)
        assert not any(hooks), f"hook left on {type(module).__name__}"
    assert not model.training
    assert region_tagger.predict_pils([image]).shape == (1, 16)  # still usable for plain tagging


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gives_the_same_alignment(region_checkpoint, dtype):
    from jtp_core import load_tagger
    from jtp_core.heatmaps.heatmap import tag_heatmaps

    tagger = load_tagger(region_checkpoint, device="cpu", precision={torch.bfloat16: "bf16"}.get(dtype, "fp16"))
    image, red, blue, edge = _case_image("landscape")
    with torch.inference_mode():
        (result,) = tag_heatmaps(tagger, [image], "red hat, blue eyes")
    assert result.maps.dtype == torch.float32 and torch.isfinite(result.maps).all()
    assert_lit_exactly(result.maps[0], red, "half red")
    assert_unseen_border_dark(result.maps[1], blue, edge, "half blue")
    assert all(p.dtype == dtype and not p.requires_grad and p.grad is None for p in tagger.model.parameters())


def test_tag_names_are_forgiving_and_unknown_tags_name_close_matches():
    from jtp_core.errors import UnknownTagError
    from jtp_core.heatmaps.heatmap import TagQuery, parse_tag_query

    tags = tiny_tags(16)
    query = parse_tag_query(r"Red Hat, membrane \(anatomy\), red_hat, blue eyes, top 2", tags)
    assert query == TagQuery(named=(6, 4, 5), top=2)
    with pytest.raises(UnknownTagError, match=r"'red hatt'.*close matches: red_hat"):
        parse_tag_query("red hatt", tags)
    with pytest.raises(UnknownTagError, match="no tags given"):
        parse_tag_query(" , ", tags)


def test_cam_to_image_places_the_grid_on_the_padded_square():
    from jtp_core.heatmaps.heatmap import cam_to_image

    cam = torch.zeros(GRID, GRID)
    cam[:, 0] = 1.0  # the first column of patches: padded x in [0, 14)
    # a portrait image is padded left and right; the first patch column lies in the padding → nothing lit
    assert cam_to_image(cam, (384, 192), SIZE, (PATCH, PATCH)).max() == 0
    # 384x384: no resize, no padding: padded pixels are image pixels
    square = cam_to_image(cam, (384, 384), SIZE, (PATCH, PATCH))
    seen = GRID * PATCH  # 378
    assert square[:seen, :7].min() == 1 and square[:seen, 21:].max() == 0
    assert square[:seen, 13:15].mean().item() == pytest.approx(0.5)  # halfway between patch centres 7 and 21
    assert square[seen:].max() == 0  # the bottom 6 rows are never seen


# --- mask and overlay helpers ------------------------------------------------------------------------------

def test_render_helpers():
    from jtp_core.heatmaps.heatmap import Heatmap
    from jtp_core.heatmaps.render import colorize, combine_heatmaps, feather, overlay, threshold_mask

    jet = colorize(torch.tensor([[0.0, 0.5, 1.0]]))
    assert torch.allclose(jet[0, 0], torch.tensor([0.0, 0.0, 0.5]))  # cold = dark blue
    assert torch.allclose(jet[0, 2], torch.tensor([0.5, 0.0, 0.0]))  # hot = dark red
    assert jet[0, 1, 1] > 0.9  # middle = green-ish

    strong = Heatmap(["a"], [0.9], torch.ones(1, 4, 4), peaks=[2.0])
    weak = Heatmap(["a"], [0.3], torch.ones(1, 4, 4), peaks=[0.5])
    assert combine_heatmaps([strong, weak], "per image").amax(dim=(1, 2)).tolist() == [1.0, 1.0]
    assert combine_heatmaps([strong, weak], "per batch").amax(dim=(1, 2)).tolist() == [1.0, 0.25]
    two = Heatmap(["a", "b"], [0.9, 0.8], torch.stack([torch.eye(4), torch.eye(4).flip(1)]), peaks=[1.0, 1.0])
    assert torch.equal(combine_heatmaps([two])[0], torch.eye(4).maximum(torch.eye(4).flip(1)))  # union

    heat = torch.linspace(0, 1, 40).repeat(1, 40, 1)
    binary = threshold_mask(heat, 0.5)
    assert set(binary.unique().tolist()) == {0.0, 1.0} and binary[0, 0, :20].max() == 0
    soft = feather(binary, 4)
    assert soft.shape == binary.shape and 0 < soft[0, 0, 19] < 1 and soft[0, 0, 0] == 0 and soft[0, 0, -1] == 1
    assert torch.equal(feather(torch.ones(1, 9, 9), 3), torch.ones(1, 9, 9))  # borders not darkened

    image = torch.full((1, 40, 40, 3), 0.2)
    shown = overlay(image, heat, opacity=0.0)
    assert torch.allclose(shown, image)
    assert torch.allclose(overlay(image, heat, opacity=1.0), colorize(heat))


# --- ComfyUI node ------------------------------------------------------------------------------------------

def _node_widgets(node, **changes):
    widgets = {key: opts.get("default") for key, (_, opts) in node.INPUT_TYPES()["required"].items()
               if key not in ("jtp_model", "image")}
    widgets.update(changes)
    return widgets


def test_heatmap_node_masks_the_region_in_each_image(comfy, region_checkpoint):
    standin, pack = comfy
    shutil.copytree(region_checkpoint, standin.models_dir / "jtp" / "REGION")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("REGION", "auto", "auto")
    node = pack.NODE_CLASS_MAPPINGS["JTPTagHeatmap"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["JTPTagHeatmap"] == "JTP Tag Heatmap"
    image, red, *_ = _case_image("landscape")
    array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)
    images = torch.stack([array, array.flip(1)])  # second image mirrored
    with torch.inference_mode():  # ComfyUI runs nodes inside inference mode, with inference tensors
        images = images.clone()
        out = node().heatmap(jtp_model=model, image=images, **_node_widgets(node, tags="red_hat", batch_size=1))
    mask, shown, scores = out["result"]
    assert mask.shape == images.shape[:3] and shown.shape == images.shape
    assert mask.min() >= 0 and mask.max() <= 1 and shown.min() >= 0 and shown.max() <= 1
    y0, y1, x0, x1 = red
    assert_lit_exactly(mask[0], red, "node")
    # mirrored, the block's sides no longer fall on patch boundaries: lit inside, dark a patch away
    assert_lit_exactly(mask[1], (y0, y1, images.shape[2] - x1, images.shape[2] - x0), "node mirrored", edges=False)
    assert [list(json.loads(s)) for s in scores] == [["red_hat"], ["red_hat"]]
    assert standin.loaded == [model.patcher] and standin.progress == [(1, 2), (2, 2)]

    with torch.inference_mode():
        out = node().heatmap(jtp_model=model, image=images[:1], **_node_widgets(
            node, tags="red hat", threshold=0.5, feather=0, opacity=1.0))
    mask, shown, _ = out["result"]
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert shown[0, (y0 + y1) // 2, (x0 + x1) // 2].tolist() == pytest.approx([0.5, 0.0, 0.0])  # jet: hot


def test_heatmap_node_optional_mask_and_unknown_tag(comfy, region_checkpoint):
    standin, pack = comfy
    shutil.copytree(region_checkpoint, standin.models_dir / "jtp" / "REGION")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("REGION", "cpu", "fp32")
    node = pack.NODE_CLASS_MAPPINGS["JTPTagHeatmap"]
    image, red, *_ = _case_image("square")
    images = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]
    transparent = torch.zeros(1, 200, 200)
    transparent[0, : red[1] + 20] = 1.0  # the red block is transparent → seen as gray → nothing to find
    out = node().heatmap(jtp_model=model, image=images, mask=transparent, **_node_widgets(node, tags="red hat"))
    assert out["result"][0].max() == 0
    from jtp_core.errors import UnknownTagError  # the pack's copy is another module; match by name

    with pytest.raises(Exception, match=r"close matches: red_hat") as caught:
        node().heatmap(jtp_model=model, image=images, **_node_widgets(node, tags="red hatt"))
    assert type(caught.value).__name__ == UnknownTagError.__name__

    from comfy_standin import InterruptProcessingException

    standin.progress.clear()
    standin.interrupt_after = 1  # Cancel pressed during the first chunk: stops before the second
    with pytest.raises(InterruptProcessingException):
        node().heatmap(jtp_model=model, image=images.expand(3, -1, -1, -1),
                       **_node_widgets(node, tags="red hat", batch_size=1))
    assert standin.progress == [(1, 3)]


# --- CLI and example workflow ------------------------------------------------------------------------------

def test_cli_writes_overlay_and_mask_pngs(tmp_path, region_checkpoint):
    image, red, *_ = _case_image("portrait")
    source = tmp_path / "in.png"
    image.save(source)
    overlay_png, mask_png = tmp_path / "out" / "overlay.png", tmp_path / "mask.png"
    completed = subprocess.run(
        [sys.executable, "-m", "jtp_core", "heatmap", str(source), "--tag", "red hat", "--out", str(overlay_png),
         "--mask", str(mask_png), "--model", str(region_checkpoint), "--device", "cpu", "--offline"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("red_hat\t")
    with Image.open(overlay_png) as shown, Image.open(mask_png) as mask:
        assert (shown.size, shown.mode, mask.size, mask.mode) == (image.size, "RGB", image.size, "L")
        assert_lit_exactly(torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255), red, "cli")


def test_cli_unknown_tag_is_a_clear_error(tmp_path, region_checkpoint, capsys):
    from jtp_core.cli.main import main

    Image.new("RGB", (50, 40)).save(tmp_path / "in.png")
    code = main(["heatmap", str(tmp_path / "in.png"), "--tag", "blue eye", "--model", str(region_checkpoint),
                 "--device", "cpu", "--offline"])
    assert code == 2 and "close matches: blue_eyes" in capsys.readouterr().err
    assert not (tmp_path / "in.heatmap.png").exists()


def test_example_workflow_matches_the_nodes(comfy):
    _, pack = comfy
    workflow = json.loads((ROOT / "example_workflows" / "jtp_tag_heatmap.json").read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    ours = {node["type"]: node for node in nodes.values() if node["type"].startswith("JTP")}
    assert set(ours) == {"JTPModelLoader", "JTPTagHeatmap"}
    assert {"LoadImage", "MaskPreview", "PreviewImage"} <= {node["type"] for node in nodes.values()}
    for type_name, node in ours.items():
        types = pack.NODE_CLASS_MAPPINGS[type_name].INPUT_TYPES()
        spec = {**types["required"], **types.get("optional", {})}
        widgets = [name for name, (kind, _) in spec.items()
                   if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN")]
        assert len(node["widgets_values"]) == len(widgets), type_name
        for name, value in zip(widgets, node["widgets_values"], strict=True):
            kind, _ = spec[name]
            if isinstance(kind, list):
                assert value in kind, f"{type_name}.{name} = {value!r}"
    for link_id, origin, _, target, _, kind in workflow["links"]:  # every link joins existing nodes
        assert origin in nodes and target in nodes, link_id
        assert kind in ("IMAGE", "MASK", "JTP_MODEL")


def test_heatmap_node_is_an_output_node(comfy):
    # ComfyUI sends a cached node's ui text again only for output nodes: else its scores box stays empty on reruns
    _, pack = comfy
    assert pack.NODE_CLASS_MAPPINGS["JTPTagHeatmap"].OUTPUT_NODE is True


def test_int8_model_maps_the_same_region(tmp_path, region_checkpoint):
    """int8 quantizes the backbone only: the attention-pool head keeps the gradient Grad-CAM needs."""
    from jtp_core.cli.main import main

    image, red, *_ = _case_image("landscape")
    image.save(tmp_path / "in.png")
    code = main(["heatmap", str(tmp_path / "in.png"), "--tag", "red hat", "--mask", str(tmp_path / "mask.png"),
                 "--model", str(region_checkpoint), "--precision", "int8", "--offline"])
    assert code == 0
    with Image.open(tmp_path / "mask.png") as mask:
        assert_lit_exactly(torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255), red, "int8")


def test_cli_unwritable_output_is_a_clear_error(tmp_path, region_checkpoint, capsys):
    from jtp_core.cli.main import main

    Image.new("RGB", (50, 40)).save(tmp_path / "in.png")
    (tmp_path / "file").write_text("not a folder")
    code = main(["heatmap", str(tmp_path / "in.png"), "--tag", "red hat", "--out", str(tmp_path / "file" / "o.png"),
                 "--model", str(region_checkpoint), "--device", "cpu", "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
