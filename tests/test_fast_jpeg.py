"""Opt-in fast JPEG decoding (draft mode) and pinned batches: used only when asked, only for JPEGs, never
below the fitted size, close to the exact path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from jtp_core.captioning.caption import CaptionRequest, caption_images
from jtp_core.cli.caption import run_caption  # noqa: F401  (the CLI module must import cleanly)
from jtp_core.cli.main import build_parser
from jtp_core.families.base import stack_inputs
from jtp_core.families.pilot.fast_jpeg import open_for_model, preprocess_file
from jtp_core.families.pilot.preprocess import fit_size
from jtp_core.inference.streaming import should_pin, stream_batches

# One 8-bit level in model-input units ([-1, 1] spans 255 levels over 2.0).
LEVEL = 2 / 255


def photo(path, width, height, seed=0, **save):
    """Smooth colour fields plus grain: decodes like a photo (pure noise would exaggerate the difference)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(np.asarray(coarse, np.int16) + grain, 0, 255).astype(np.uint8)).save(path, **save)
    return path


@pytest.fixture
def drafts(monkeypatch):
    """Record every draft request Pillow's JPEG plugin receives."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((self.filename, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


def test_draft_only_when_asked_and_only_for_jpegs(tmp_path, drafts):
    jpeg = photo(tmp_path / "a.jpg", 1600, 1200, quality=90)
    png = photo(tmp_path / "b.png", 1600, 1200, compress_level=1)
    assert open_for_model(jpeg, 384)[0].size == (1600, 1200)  # default: the full, exact decode
    assert open_for_model(png, 384, fast_jpeg=True)[0].size == (1600, 1200)
    assert drafts == []
    image, original = open_for_model(jpeg, 384, fast_jpeg=True)
    assert original == (1600, 1200) and image.size == (400, 300)  # 1/4 scale: the smallest still >= 384x288
    assert drafts == [(str(jpeg), (384, 288))]
    # a PNG goes through the exact path even in fast mode
    assert torch.equal(preprocess_file(png, 384, fast_jpeg=True), preprocess_file(png, 384))


@pytest.mark.parametrize("width, height", [
    (1600, 1200), (3073, 1000), (1537, 3071), (767, 500), (768, 1536), (2304, 2304), (385, 100), (200, 120),
])
def test_fast_decode_is_never_below_the_fitted_size(tmp_path, width, height):
    path = photo(tmp_path / "x.jpg", width, height, quality=85)
    fitted_height, fitted_width = fit_size(height, width, 384)
    image, original = open_for_model(path, 384, fast_jpeg=True)
    assert original == (width, height)
    # never below the fitted size (a small image, which the fit scales up, is decoded at its own size)
    assert image.width >= min(fitted_width, width) and image.height >= min(fitted_height, height)
    if min(width // fitted_width, height // fitted_height) >= 2:
        assert image.width < width  # a real draft happened: the check above is not vacuous
    fast, exact = preprocess_file(path, 384, fast_jpeg=True), preprocess_file(path, 384)
    assert fast.shape == exact.shape == (3, 384, 384)
    # same fitted size, so the same gray padding (an 8-bit pixel never normalises to exactly 0): the draft
    # changes pixel values, never the geometry
    assert torch.equal(fast == 0, exact == 0)


def test_fast_model_input_is_close_to_the_exact_path(tmp_path):
    # measured on this image: max 6 levels, mean 0.7 of a level (of 255); the bounds leave a little room
    path = photo(tmp_path / "big.jpg", 1600, 1200, quality=90)
    difference = (preprocess_file(path, 384, fast_jpeg=True) - preprocess_file(path, 384)).abs()
    assert difference.max() <= 8 * LEVEL
    assert difference.mean() <= 1.0 * LEVEL
    assert difference.max() > 0  # it is a different decode: the mode is opt-in for a reason


def test_caption_request_fast_jpeg_is_off_by_default_and_drafts_when_on(tmp_path, tiny_tagger, drafts):
    folder = tmp_path / "set"
    folder.mkdir()
    photo(folder / "a.jpg", 1200, 900, quality=90)
    photo(folder / "b.png", 600, 400)
    assert CaptionRequest(inputs=[folder]).fast_jpeg is False
    summary = caption_images(tiny_tagger, CaptionRequest(inputs=[folder], mode="overwrite", workers=0))
    assert summary.tagged == 2 and drafts == []
    summary = caption_images(tiny_tagger, CaptionRequest(inputs=[folder], mode="overwrite", workers=0,
                                                         fast_jpeg=True))
    assert summary.tagged == 2 and [name for name, _ in drafts] == [str(folder / "a.jpg")]
    assert (folder / "a.txt").read_text() and (folder / "b.txt").read_text()


def test_cli_flags(tmp_path):
    parser = build_parser()
    assert parser.parse_args(["caption", "d"]).fast_jpeg is False
    assert parser.parse_args(["caption", "d", "--fast-jpeg"]).fast_jpeg is True
    assert parser.parse_args(["tag", "x.jpg"]).fast_jpeg is False
    assert parser.parse_args(["tag", "x.jpg", "--fast-jpeg"]).fast_jpeg is True


def test_tag_command_fast_jpeg_drafts(tmp_path, linear_checkpoint, drafts, capsys):
    from jtp_core.cli.main import main

    image = photo(tmp_path / "a.jpg", 1200, 900, quality=90)
    assert main(["tag", str(image), "--model", str(linear_checkpoint), "--device", "cpu"]) == 0
    assert drafts == []
    assert main(["tag", str(image), "--model", str(linear_checkpoint), "--device", "cpu", "--fast-jpeg"]) == 0
    assert len(drafts) == 1 and capsys.readouterr().out.strip()


def test_pin_only_for_cuda():
    assert should_pin(torch.device("cpu")) is False
    assert should_pin("cpu") is False
    assert should_pin("cuda") is True and should_pin(torch.device("cuda", 1)) is True
    assert should_pin("meta") is False


def test_unpinned_batches_on_the_cpu_match_a_plain_stack():
    tensors = [torch.full((3, 4, 4), float(i)) for i in range(3)]
    assert torch.equal(stack_inputs([{"x": t} for t in tensors])["x"], torch.stack(tensors))
    (batch,) = stream_batches(range(3), lambda i: {"x": tensors[i]}, batch_size=3, workers=0)
    assert torch.equal(batch.inputs["x"], torch.stack(tensors))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_batches_on_cuda():
    tensors = [torch.full((3, 4, 4), float(i)) for i in range(5)]
    batches = list(stream_batches(range(5), lambda i: {"x": tensors[i]}, batch_size=2, workers=1, pin_memory=True))
    assert all(batch.inputs["x"].is_pinned() for batch in batches)
    assert torch.equal(torch.cat([batch.inputs["x"] for batch in batches]), torch.stack(tensors))


def test_folder_nodes_have_an_off_by_default_fast_jpeg_widget(comfy, linear_checkpoint, tmp_path, drafts):
    import shutil

    standin, pack = comfy
    for name in ("JTPCaptionFolder", "JTPLoadImagesFromFolder"):
        kind, spec = pack.NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["optional"]["fast_jpeg"]
        assert kind == "BOOLEAN" and spec["default"] is False and "exactness" in spec["tooltip"]
    folder = tmp_path / "set"
    folder.mkdir()
    photo(folder / "a.jpg", 1200, 900, quality=90)
    loader = pack.NODE_CLASS_MAPPINGS["JTPLoadImagesFromFolder"]()
    (exact,), _, _ = loader.load(str(folder), False, 0, 0)
    (fast,), _, _ = loader.load(str(folder), False, 0, 0, fast_jpeg=True)
    assert exact.shape == (1, 900, 1200, 3) and fast.shape == (1, 288, 384, 3)  # the draft, already fitted

    shutil.copytree(linear_checkpoint, standin.models_dir / "jtp" / "TINY_PILOT")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    inputs = {key: opts["default"] for section in node.INPUT_TYPES().values()
              for key, (_, opts) in section.items() if isinstance(opts, dict) and "default" in opts}
    inputs.update(folder=str(folder), mode="overwrite", batch_size=1)
    drafts.clear()
    out = node().caption(jtp_model=model, **inputs)
    assert "1 captioned" in out["result"][0] and drafts == []  # off by default
    out = node().caption(jtp_model=model, **{**inputs, "fast_jpeg": True})
    assert "1 captioned" in out["result"][0] and len(drafts) == 1 and (folder / "a.txt").exists()


def test_fast_loader_node_then_tagger_sees_what_caption_folder_sees(comfy, tiny_tagger, tmp_path):
    """Load Images From Folder (fast) → JTP Tagger must give the fast folder path's scores, also for sizes where
    fitting the draft again would round one pixel differently (442x1001 fits to 170x384, its draft to 169)."""
    _, pack = comfy
    folder = tmp_path / "set"
    folder.mkdir()
    path = photo(folder / "tall.jpg", 442, 1001, quality=90)
    (image,), (mask,), _ = pack.NODE_CLASS_MAPPINGS["JTPLoadImagesFromFolder"]().load(
        str(folder), False, 0, 0, fast_jpeg=True
    )
    via_nodes = tiny_tagger.predict_image_tensor(image, mask)
    via_folder = tiny_tagger.predict({"pixels": preprocess_file(path, 384, fast_jpeg=True).unsqueeze(0)})
    assert torch.allclose(via_nodes, via_folder, atol=1e-6)

