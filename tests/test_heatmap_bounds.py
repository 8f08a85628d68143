"""Heatmaps of big images in bounded memory, in the displayed (EXIF) orientation, with their output paths
checked before the model loads (issue #14, items 10, 11 and 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from jtp_core.cli.main import main

ROOT = Path(__file__).resolve().parent.parent

RSS_PROBE = """
import resource, sys
from jtp_core.cli.main import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
sys.exit(code)
"""


def _peak_rss_kib(image: Path, checkpoint: Path, tmp_path: Path) -> int:
    run = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, "heatmap", str(image), "--tag", "top 2", "--model", str(checkpoint),
         "--device", "cpu", "--out", str(tmp_path / "overlay.png"), "--mask", str(tmp_path / "mask.png"),
         "--feather", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return int(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ")
def test_heatmap_of_a_big_image_costs_little_more_than_a_small_one(tmp_path, linear_checkpoint):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(small)
    Image.new("RGB", (3000, 3000), (200, 40, 40)).save(big)  # 9 MP, a small file
    baseline = _peak_rss_kib(small, linear_checkpoint, tmp_path)
    extra_mib = (_peak_rss_kib(big, linear_checkpoint, tmp_path) - baseline) / 1024
    # decoding and preprocessing need ~60 MB at this size; the old [T,H,W] float32 stacks and full-size
    # colormap temporaries needed ~790 MB more
    assert extra_mib < 300, f"{extra_mib:.0f} MiB above the small image's peak"
    with Image.open(tmp_path / "overlay.png") as overlay, Image.open(tmp_path / "mask.png") as mask:
        assert overlay.size == mask.size == (3000, 3000) and (overlay.mode, mask.mode) == ("RGB", "L")


def test_renderers_never_build_the_full_map_stack(monkeypatch):
    from jtp_core.heatmaps import render
    from jtp_core.heatmaps.heatmap import Heatmap, pilot_mapping

    heatmap = Heatmap(["a", "b", "c"], [0.5] * 3, peaks=[1.0] * 3, grids=torch.rand(3, 27, 27),
                      mapping=pilot_mapping((1200, 900), 384, (14, 14), (27, 27)))
    monkeypatch.setattr(render, "BLOCK_BYTES", 64 * 900 * 4)
    monkeypatch.setattr("jtp_core.heatmaps.heatmap.BLOCK_BYTES", 64 * 900 * 4)
    full = heatmap.maps.amax(dim=0)  # the reference, built once here
    blocks = []
    original = type(heatmap.mapping).rows

    def recording(self, grids, start, stop):
        out = original(self, grids, start, stop)
        blocks.append(out.numel())
        return out

    monkeypatch.setattr(type(heatmap.mapping), "rows", recording)
    monkeypatch.setattr(Heatmap, "maps", property(lambda self: pytest.fail("built the [T, H, W] stack")))
    mask = render.render_mask_uint8(heatmap, 0.0, 3)
    overlay = render.render_overlay_uint8(np.zeros((1200, 900, 3), np.uint8), heatmap, 1.0)
    assert mask.shape == (1200, 900) and overlay.shape == (1200, 900, 3)
    assert max(blocks) <= 3 * (64 // 3 + 2 * 3 + 1) * 900  # a block of rows (plus the feather halo) per tag
    soft = render.render_mask_uint8(heatmap)
    assert np.abs(soft.astype(int) - (full * 255).round().int().numpy()).max() <= 1


def _oriented_jpeg(path: Path, orientation: int) -> Image.Image:
    """A 300x150 (stored) JPEG with a red block in its top-left corner and the given EXIF orientation."""
    pixels = np.full((150, 300, 3), 60, np.uint8)
    pixels[:60, :90] = (220, 20, 20)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, quality=95, exif=exif)
    return image


@pytest.mark.parametrize("orientation", [6, 3])
def test_mask_and_overlay_follow_the_displayed_orientation(tmp_path, linear_checkpoint, capsys, orientation):
    rotated = tmp_path / "rotated.jpg"
    _oriented_jpeg(rotated, orientation)
    plain = tmp_path / "plain.jpg"
    _oriented_jpeg(plain, 1)  # the same stored pixels, without a turn
    common = ["--tag", "top 1", "--model", str(linear_checkpoint), "--device", "cpu"]
    assert main(["heatmap", str(rotated), *common, "--out", str(tmp_path / "o6.png"),
                 "--mask", str(tmp_path / "m6.png")]) == 0
    assert main(["heatmap", str(plain), *common, "--out", str(tmp_path / "o1.png"),
                 "--mask", str(tmp_path / "m1.png")]) == 0
    capsys.readouterr()
    with Image.open(rotated) as image:
        displayed = ImageOps.exif_transpose(image).size
    with Image.open(tmp_path / "m6.png") as mask6, Image.open(tmp_path / "o6.png") as overlay6, \
            Image.open(tmp_path / "m1.png") as mask1:
        assert mask6.size == overlay6.size == displayed
        # the map is computed on the stored pixels (as the reference tags them) and turned for display
        reference = mask1.copy()
        reference.info["exif"] = Image.open(rotated).info["exif"]
        turned = ImageOps.exif_transpose(reference)
        assert np.abs(np.asarray(turned, dtype=int) - np.asarray(mask6, dtype=int)).max() <= 1


def test_heatmap_outputs_are_checked_before_the_model_loads(tmp_path, capsys):
    Image.new("RGB", (40, 30)).save(tmp_path / "in.png")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code = main(["heatmap", str(tmp_path / "in.png"), "--tag", "top 1", "--out", str(tmp_path / "o.png"),
                 "--mask", str(blocker / "mask.png"), "--model", "/no/such/model"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the mask" in err and "/no/such/model" not in err
    assert not (tmp_path / "o.png").exists()  # the overlay was not written first
