"""JTP-3 Hydra and Hydra 3.5 through the product's own paths: model folders, the Tagger, tag selection, the CLI.

Fidelity is checked image → probabilities against the independent references the model and preprocessing tests
write from the published facts (test_hydra_model.reference_probs, test_hydra_preprocess.release_reference).
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from hydra_checkpoints import write_hydra_checkpoint
from PIL import Image
from safetensors.torch import load_file
from test_hydra_model import LN_EPS, reference_probs
from test_hydra_preprocess import release_reference

from jtp_core import TagOptions, available_models, load_tagger, resolve_model, tag_results
from jtp_core.cli.main import main
from jtp_core.tags.postprocess import select_tags

NUM_TAGS = 12
SEQ = 256


def _val_rows(tags: list[str]) -> str:
    """JTP-3 val CSV: tag 0 never reaches the precision floor (TP = 0), the others qualify from 0.3 on."""
    lines = ["tag,threshold,tp,fp,tn,fn"]
    for position, tag in enumerate(tags):
        for threshold in (0.1, 0.3, 0.5):
            tp = 0 if position == 0 else int(100 * threshold)
            fp = 100 if position == 0 else int(60 * (0.6 - threshold))
            lines.append(f"{tag},{threshold},{tp},{fp},500,{40 if position == 0 else 30}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hydra-models")
    jtp3 = write_hydra_checkpoint(root / "TINY_JTP3" / "tiny-jtp-3-hydra.safetensors", "rr_hydra", NUM_TAGS, seed=5)
    write_hydra_checkpoint(root / "TINY_H35" / "tiny-hydra.safetensors", "rr_hydra2", NUM_TAGS, seed=6)
    from jtp_core.families.header import read_header

    tags = read_header(jtp3).metadata["classifier.labels"].split("\n")
    table = ["tag,category,implications"] + [
        f"{tag},{5 if tag in ('canine', 'fox', 'mammal') else 0},{'canine' if tag == 'fox' else ''}" for tag in tags
    ]
    (root / "TINY_JTP3" / "tiny-jtp-3-hydra-tags.csv").write_text("\n".join(table) + "\n")
    (root / "TINY_JTP3" / "tiny-jtp-3-hydra-val.csv").write_text(_val_rows(tags))
    return root


@pytest.fixture(scope="module")
def taggers(models_dir):
    return {
        name: load_tagger(name, device="cpu", models_dirs=[models_dir], sequence_length=SEQ)
        for name in ("TINY_JTP3", "TINY_H35")
    }


def _photo(height: int, width: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [np.sin(x / (7 + c) + y / (11 + 2 * c)) * 90 + 128 for c in range(3)]
    pixels = np.stack(channels, -1) + rng.normal(0, 20, (height, width, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    if mode == "RGBA":
        alpha = (np.arange(width)[None, :].repeat(height, 0) * 255 // max(width - 1, 1)).astype(np.uint8)
        image.putalpha(Image.fromarray(alpha))
    return image


MIXED = {"portrait": (300, 110), "landscape": (90, 400), "tiny": (9, 13), "square": (256, 256)}


def test_model_folders_are_found_without_tags_json(models_dir):
    assert {"TINY_JTP3", "TINY_H35"} <= set(available_models([models_dir]))
    files = resolve_model("TINY_JTP3", models_dirs=[models_dir])
    assert set(files.side_files) == {"tag_table", "validation"} and files.tags is None
    assert resolve_model("TINY_H35", models_dirs=[models_dir]).side_files == {}


def test_labels_rules_and_precision(taggers):
    jtp3, h35 = taggers["TINY_JTP3"], taggers["TINY_H35"]
    assert (jtp3.family.name, jtp3.variant, jtp3.labels.rules) == ("hydra", "rr_hydra", "jtp3")
    assert (h35.variant, h35.labels.rules) == ("rr_hydra2", "hydra")
    assert jtp3.dtype == h35.dtype == torch.float32  # auto on the CPU: the bf16 weights evaluated exactly
    assert jtp3.labels.categories[jtp3.tags.index("fox")] == "species"  # from the tags CSV beside the weights
    assert h35.labels.validation.shape[:2] == (NUM_TAGS, 9)  # inside the file


@pytest.mark.parametrize("name", ["portrait", "landscape", "tiny", "rgba"])
def test_jtp3_image_to_probabilities_matches_the_reference(models_dir, taggers, name):
    """Encoded file → the JTP-3 release's preprocessing and module equations (fp32), |Δp| ≤ 1e-4."""
    tagger = taggers["TINY_JTP3"]
    image = _photo(150, 70, 1, "RGBA") if name == "rgba" else _photo(*MIXED[name], seed=2)
    data = io.BytesIO()
    image.save(data, "PNG")
    pixels = release_reference(data.getvalue(), max_seq=SEQ)  # [h, w, 3] uint8, independent of jtp_core
    gh, gw = pixels.shape[0] // 16, pixels.shape[1] // 16
    tokens = torch.from_numpy(pixels.reshape(gh, 16, gw, 16, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, 768).copy())
    patches = torch.zeros(SEQ, 768, dtype=torch.uint8)
    coords = torch.zeros(SEQ, 2, dtype=torch.int32)
    valid = torch.zeros(SEQ, dtype=torch.bool)
    patches[: gh * gw], valid[: gh * gw] = tokens, True
    coords[: gh * gw, 0], coords[: gh * gw, 1] = torch.arange(gh * gw) // gw, torch.arange(gh * gw) % gw
    state = load_file(str(resolve_model("TINY_JTP3", models_dirs=[models_dir]).weights))
    expected = reference_probs(state, "rr_hydra", patches, coords, valid, LN_EPS["rr_hydra"])
    actual = tagger.predict_pils([Image.open(io.BytesIO(data.getvalue()))])[0]
    assert (actual - expected).abs().max() <= 1e-4
    assert expected.std() > 0.01  # not saturated: the comparison means something


@pytest.mark.parametrize("name", ["TINY_JTP3", "TINY_H35"])
def test_mixed_aspect_ratios_share_one_forward(models_dir, taggers, name):
    images = [_photo(h, w, seed) for seed, (h, w) in enumerate(MIXED.values())]
    fp32 = taggers[name]
    together = fp32.predict_pils(images, batch_size=len(images))
    alone = torch.cat([fp32.predict_pils([image]) for image in images])
    assert (together - alone).abs().max() <= 1e-5
    bf16 = load_tagger(name, device="cpu", precision="bf16", models_dirs=[models_dir], sequence_length=SEQ)
    bf16_alone = torch.cat([bf16.predict_pils([image]) for image in images])
    assert (bf16.predict_pils(images, batch_size=4) - bf16_alone).abs().max() <= 1e-3
    assert (bf16.predict_pils(images) - together).abs().max() < 0.05  # bf16 rounding only


@pytest.mark.parametrize("name", ["TINY_JTP3", "TINY_H35"])
def test_comfy_image_and_mask_give_the_file_scores(taggers, name):
    tagger = taggers[name]
    image = _photo(120, 90, 4, "RGBA")
    rgba = torch.from_numpy(np.array(image)).float() / 255
    from_tensor = tagger.predict_image_tensor(rgba[None, ..., :3], 1 - rgba[None, ..., 3])
    assert (from_tensor - tagger.predict_pils([image])).abs().max() <= 1e-5
    opaque = tagger.predict_image_tensor(rgba[None, ..., :3], torch.zeros(1, 64, 64))  # LoadImage's placeholder
    assert (opaque - tagger.predict_pils([image.convert("RGB")])).abs().max() <= 1e-5


def test_hydra_35_calibrated_thresholds_decide_by_default(models_dir):
    """A tag whose validation counts never qualify is never output by default, whatever its score; with a fixed
    threshold it is; and Hydra keeps p >= threshold."""
    counts = torch.zeros(NUM_TAGS, 9, 4)
    counts[:, :, 0], counts[:, :, 1], counts[:, :, 2], counts[:, :, 3] = 50, 5, 500, 5  # every tag fine …
    counts[3, :, 0] = 0  # … except tag 3: no true positive at any threshold
    folder = models_dir / "CALIBRATED"
    write_hydra_checkpoint(folder / "calibrated.safetensors", "rr_hydra2", NUM_TAGS, seed=6)
    from safetensors.torch import save_file

    from jtp_core.families.header import read_header

    path = folder / "calibrated.safetensors"
    tensors, metadata = load_file(str(path)), read_header(path).metadata
    tensors["validation"] = counts
    save_file(tensors, str(path), metadata=metadata)
    tagger = load_tagger(path, device="cpu", sequence_length=SEQ)
    probs = torch.full((1, NUM_TAGS), 0.95)
    tag3 = tagger.tags[3]
    default = [tag for tag, _ in select_tags(probs[0], tagger.labels, TagOptions(implications="off"))]
    assert tag3 not in default and len(default) == NUM_TAGS - 1
    fixed_options = TagOptions(calibration="off", implications="off")
    fixed = [tag for tag, _ in select_tags(probs[0], tagger.labels, fixed_options)]
    assert tag3 in fixed
    at_threshold = torch.full((NUM_TAGS,), 0.5)
    kept = select_tags(at_threshold, tagger.labels, TagOptions(calibration="off", threshold=0.5, implications="off"))
    assert len(kept) == NUM_TAGS  # p >= t, not p > t


def test_jtp3_calibration_comes_from_the_val_csv_and_categories_from_the_tags_csv(taggers):
    tagger = taggers["TINY_JTP3"]
    probs = torch.full((NUM_TAGS,), 0.99)
    kept = dict(select_tags(probs, tagger.labels, TagOptions(implications="off")))
    assert tagger.tags[0] not in kept and len(kept) == NUM_TAGS - 1  # tag 0 never qualified in the val CSV
    without_species = dict(select_tags(probs, tagger.labels, TagOptions(exclude_categories=("species",))))
    assert not {"canine", "fox", "mammal"} & set(without_species)


def test_jtp3_inherit_raises_an_implied_tag_before_the_threshold(taggers):
    """JTP-3's release: inherit gives canine fox's probability before deciding (fox → canine in the tags CSV)."""
    tagger = taggers["TINY_JTP3"]
    probs = torch.zeros(NUM_TAGS)
    probs[tagger.tags.index("fox")], probs[tagger.tags.index("canine")] = 0.9, 0.1
    options = TagOptions(calibration="off", threshold=0.5)
    assert dict(select_tags(probs, tagger.labels, options)) == pytest.approx({"fox": 0.9, "canine": 0.9})
    off = TagOptions(calibration="off", threshold=0.5, implications="off")
    assert dict(select_tags(probs, tagger.labels, off)) == pytest.approx({"fox": 0.9})
    with pytest.raises(ValueError, match="'enforce' is not offered for this model"):
        select_tags(probs, tagger.labels, TagOptions(implications="enforce"))


def test_pilot_only_options_are_refused_for_hydra_and_the_reverse(taggers, tiny_tagger):
    with pytest.raises(ValueError, match="'add' is not offered"):
        tag_results(torch.rand(1, NUM_TAGS), taggers["TINY_H35"].labels, TagOptions(implications="add"))
    with pytest.raises(ValueError, match="calibrated thresholds need the model's validation data"):
        tag_results(torch.rand(1, 16), tiny_tagger.labels, TagOptions(calibration="f2.0"))


def test_cli_tags_with_a_hydra_model(models_dir, tmp_path, capsys):
    image = tmp_path / "a.png"
    _photo(200, 150, 7).save(image)
    folder = str(models_dir / "TINY_JTP3")
    code = main(["tag", str(image), "--model", folder, "--device", "cpu", "--json", "--sequence-length", "64",
                 "--calibration", "off", "--threshold", "0"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and len(record["scores"]) == NUM_TAGS
    assert all(math.isclose(record["symmetric_scores"][tag], 2 * p - 1, abs_tol=2e-4)
               for tag, p in record["scores"].items())
    assert main(["tag", str(image), "--model", folder, "--device", "cpu", "--sequence-length", "4000"]) == 2
    assert "2048" in capsys.readouterr().err  # the sequence length's range, named in the error


def test_caption_folder_with_a_hydra_model(models_dir, tmp_path, capsys):
    for index, (h, w) in enumerate(MIXED.values()):
        _photo(h, w, index).save(tmp_path / f"{index}.png")
    code = main(["caption", str(tmp_path), "--model", str(models_dir / "TINY_H35"), "--device", "cpu",
                 "--sequence-length", "64"])
    assert code == 0, capsys.readouterr().err
    captions = sorted(tmp_path.glob("*.txt"))
    assert len(captions) == len(MIXED) and all(path.read_text().strip() for path in captions)


def test_int8_quantizes_the_hydra_backbone_and_keeps_heads_float(models_dir, taggers):
    from jtp_core.inference.quantize import is_quantized

    int8 = load_tagger("TINY_H35", device="cpu", precision="int8", models_dirs=[models_dir], sequence_length=SEQ)
    assert is_quantized(int8.model.blocks) and not is_quantized(int8.model.attn_pool)
    assert type(int8.model.embeds.proj) is torch.nn.Linear  # the patch embedding stays float, like JTP-1's conv
    images = [_photo(h, w, seed) for seed, (h, w) in enumerate(MIXED.values())]
    expected, got = taggers["TINY_H35"].predict_pils(images), int8.predict_pils(images)
    assert 0 < (got - expected).abs().max() < 0.1  # changed, but only slightly


def _vips_reference_pixels(data: bytes, max_seq: int, background: int) -> np.ndarray:
    """Hydra 3.5's preprocessing (facts §6) with libvips itself: display-size target, ICC → sRGB, flatten on the
    background, 8-bit → 16-bit linear LUT, MKS2013 resize with gap 3, LUT back, orientation last."""
    vips = pytest.importorskip("pyvips", reason="pip install pyvips pyvips-binary")
    image = vips.Image.new_from_buffer(data, "")
    turned = image.get_typeof("orientation") != 0 and image.get("orientation") >= 5
    height, width = (image.width, image.height) if turned else (image.height, image.width)
    # the facts' size rule, evaluated directly: floored, never enlarged
    rows, cols = max(height // 16, 1), max(width // 16, 1)
    assert rows * cols <= max_seq  # keep the test images within the budget: no binary search needed here
    out_h, out_w = (cols * 16, rows * 16) if turned else (rows * 16, cols * 16)
    image = image.icc_transform("srgb", embedded=True, intent="relative", black_point_compensation=True, depth=8)
    if image.hasalpha():
        image = image.flatten(background=[background] * 3)
    codes = np.arange(256)
    to_linear = np.where(codes <= 10, codes * 257 / 12.92, ((codes + 14.025) / 269.025) ** 2.4 * 65535)
    values = np.arange(65536)
    to_srgb = np.where(values <= 205, values * 12.92 / 257, (values / 65535) ** (1 / 2.4) * 269.025 - 14.025)
    image = image.maplut(vips.Image.new_from_array(np.round(to_linear).astype(np.uint16)[None]))
    image = image.resize(out_w / image.width, vscale=out_h / image.height, kernel="mks2013", gap=3.0)
    image = image.maplut(vips.Image.new_from_array(np.round(to_srgb).clip(0, 255).astype(np.uint8)[None]))
    return image.autorot().numpy()[..., :3]


@pytest.mark.parametrize("name", ["landscape", "rgba-grey", "exif6"])
def test_hydra35_image_to_probabilities_matches_libvips_and_the_equations(models_dir, taggers, name):
    """Encoded file → RedRocket's libvips preprocessing and the Hydra 3.5 head equations (fp32), |Δp| ≤ 1e-4."""
    image = _photo(200, 330, 8, "RGBA" if name == "rgba-grey" else "RGB")
    data = io.BytesIO()
    if name == "exif6":
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(data, "JPEG", quality=92, exif=exif.tobytes())
    else:
        image.save(data, "PNG")
    pixels = _vips_reference_pixels(data.getvalue(), SEQ, background=127)  # the tiny file says "grey"
    gh, gw = pixels.shape[0] // 16, pixels.shape[1] // 16
    tokens = torch.from_numpy(pixels.reshape(gh, 16, gw, 16, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, 768).copy())
    patches, coords = torch.zeros(SEQ, 768, dtype=torch.uint8), torch.zeros(SEQ, 2, dtype=torch.int32)
    valid = torch.zeros(SEQ, dtype=torch.bool)
    patches[: gh * gw], valid[: gh * gw] = tokens, True
    coords[: gh * gw, 0], coords[: gh * gw, 1] = torch.arange(gh * gw) // gw, torch.arange(gh * gw) % gw
    state = load_file(str(resolve_model("TINY_H35", models_dirs=[models_dir]).weights))
    state.pop("validation")
    expected = reference_probs(state, "rr_hydra2", patches, coords, valid, LN_EPS["rr_hydra2"])
    actual = taggers["TINY_H35"].predict_pils([Image.open(io.BytesIO(data.getvalue()))])[0]
    assert (actual - expected).abs().max() <= 1e-4
    assert expected.std() > 0.01


def test_a_timm_without_naflexvit_gets_a_clear_message(models_dir, monkeypatch):
    import timm

    from jtp_core import JTPError

    monkeypatch.setattr(timm, "is_model", lambda name: False)  # as on a host pinned to an older timm
    monkeypatch.setattr(timm, "__version__", "0.9.16")
    with pytest.raises(JTPError, match=r"need timm 1\.0\.16 or newer .* has timm 0\.9\.16"):
        load_tagger("TINY_H35", device="cpu", models_dirs=[models_dir])
