"""Hydra tag heatmaps through the product (tag_heatmaps, the CLI, the node): on a hand-built model whose red tag
answers red patches, the map is hot on the red block of the image as displayed, and cold away from it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hydra_checkpoints import write_hydra_checkpoint
from PIL import Image
from test_hydra_model import BLUE, GRAY, RED, RED_TAG, region_state

from jtp_core import load_tagger
from jtp_core.heatmaps.heatmap import tag_heatmaps, tag_heatmaps_image_tensor

# a 10×6-patch landscape: red block on patch rows 1-3, columns 2-5; blue block rows 3-5, columns 7-9
HEIGHT, WIDTH = 6 * 16, 10 * 16
RED_BOX, BLUE_BOX = (16, 64, 32, 96), (48, 96, 112, 160)  # top, bottom, left, right in pixels


def _image() -> Image.Image:
    pixels = np.full((HEIGHT, WIDTH, 3), GRAY, dtype=np.uint8)
    pixels[RED_BOX[0] : RED_BOX[1], RED_BOX[2] : RED_BOX[3]] = RED
    pixels[BLUE_BOX[0] : BLUE_BOX[1], BLUE_BOX[2] : BLUE_BOX[3]] = BLUE
    return Image.fromarray(pixels)


@pytest.fixture(scope="module", params=["rr_hydra", "rr_hydra2"])
def tagger(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("region") / request.param
    path = write_hydra_checkpoint(folder / "region.safetensors", request.param, 6, state=region_state(request.param))
    if request.param == "rr_hydra2":  # flatten on black, LANCZOS: keep the test's colours as they are
        path = write_hydra_checkpoint(path, "rr_hydra2", 6, state=region_state("rr_hydra2"),
                                      metadata={"classifier.background": "black", "classifier.resize": "lanczos"})
    return load_tagger(path, device="cpu", sequence_length=64)


def _assert_hot_on_red(heat: torch.Tensor, sharp: bool = True, box=RED_BOX) -> None:
    """The block's patch centres (and between them) are the hottest; with ``sharp`` (CAM) hot and cold."""
    top, bottom, left, right = box
    inside = heat[top + 8 : bottom - 8, left + 8 : right - 8]
    outside = torch.ones_like(heat, dtype=torch.bool)
    outside[max(top - 16, 0) : bottom + 16, max(left - 16, 0) : right + 16] = False  # one patch of margin
    assert inside.min() > heat[outside].max()
    if sharp:
        assert inside.min() > 0.9 and heat[outside].max() < 0.1, (inside.min(), heat[outside].max())


@pytest.mark.parametrize("method", ["auto", "attention"])
def test_red_tag_map_is_hot_on_the_red_block(tagger, method):
    (heatmap,) = tag_heatmaps(tagger, [_image()], tagger.tags[RED_TAG], method=method)
    assert heatmap.tags == [tagger.tags[RED_TAG]] and heatmap.maps.shape == (1, HEIGHT, WIDTH)
    # the pool's softmax over this toy model's keys is soft: its attention is highest on red, not 0 elsewhere
    _assert_hot_on_red(heatmap.maps[0], sharp=method == "auto")


def test_map_follows_the_displayed_orientation(tagger):
    """An orientation-6 JPEG is shown turned by 90°: the mask is the displayed size, hot where red is shown."""
    stored = _image().transpose(Image.Transpose.ROTATE_90)  # what the file holds; viewers turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    data = io.BytesIO()
    stored.save(data, "PNG", exif=exif.tobytes())
    assert stored.size == (HEIGHT, WIDTH)  # stored portrait
    (heatmap,) = tag_heatmaps(tagger, [Image.open(io.BytesIO(data.getvalue()))], tagger.tags[RED_TAG])
    assert heatmap.maps.shape[-2:] == (HEIGHT, WIDTH)  # displayed landscape
    _assert_hot_on_red(heatmap.maps[0])


def test_comfy_batch_gives_masks_the_size_of_the_input(tagger):
    image = torch.from_numpy(np.asarray(_image()).copy()).float()[None] / 255
    heatmaps = tag_heatmaps_image_tensor(tagger, image.expand(2, -1, -1, -1), None, tagger.tags[RED_TAG])
    assert len(heatmaps) == 2 and all(h.maps.shape == (1, HEIGHT, WIDTH) for h in heatmaps)
    _assert_hot_on_red(heatmaps[1].maps[0])


def test_attention_is_refused_for_jtp1(tiny_tagger):
    from jtp_core import JTPError

    with pytest.raises(JTPError, match="attention map is for JTP-3 / Hydra models"):
        tag_heatmaps(tiny_tagger, [_image()], "top 1", method="attention")
