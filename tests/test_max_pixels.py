"""Huge images: Pillow's decompression-bomb warning becomes one clear line, and the pixel limit is an option
(--max-pixels, $JTP_MAX_PIXELS) for every way an image file is opened (issue #14, item 12).

Pillow's limits are lowered in the tests instead of writing 144 MP files: the code path is the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from jtp_core import ImageError
from jtp_core.families.pilot.fast_jpeg import load_for_model
from jtp_core.inference.images import max_pixels, open_image, set_max_pixels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _reset_limit(monkeypatch):
    monkeypatch.delenv("JTP_MAX_PIXELS", raising=False)
    set_max_pixels(None)
    yield
    set_max_pixels(None)


def _image(path: Path, width: int, height: int) -> Path:
    Image.new("RGB", (width, height), (10, 200, 30)).save(path)
    return path


PROBE = """
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = 1000  # as if 1600 pixels were 144 MP: above Pillow's warning limit, below 2x
from jtp_core.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_reports_pillows_warning_as_one_clear_line(tmp_path, linear_checkpoint):
    image = _image(tmp_path / "big.png", 40, 40)
    run = subprocess.run([sys.executable, "-c", PROBE, "tag", str(image), "--model", str(linear_checkpoint),
                          "--device", "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert "DecompressionBombWarning" not in run.stderr and "warnings.warn" not in run.stderr
    assert len(lines) == 1 and "big.png" in lines[0] and "--max-pixels" in lines[0], run.stderr
    assert run.stdout.strip()  # the tags were printed


def test_max_pixels_flag_refuses_bigger_images_clearly(tmp_path, linear_checkpoint, capsys):
    from jtp_core.cli.main import main

    image = _image(tmp_path / "big.png", 100, 60)
    assert main(["tag", str(image), "--model", str(linear_checkpoint), "--device", "cpu", "--max-pixels", "5000"]) == 1
    err = capsys.readouterr().err
    assert "big.png" in err and "6,000 pixels is above the pixel limit of 5,000 pixels" in err
    assert main(["tag", str(image), "--model", str(linear_checkpoint), "--device", "cpu", "--max-pixels", "6000"]) == 0


def test_limit_applies_to_every_opener_and_can_exceed_pillows(tmp_path, monkeypatch):
    image = _image(tmp_path / "a.jpg", 50, 40)  # 2000 pixels
    set_max_pixels(1999)
    for opener in (open_image, lambda path: load_for_model(path, 384, False),
                   lambda path: load_for_model(path, 384, True)):
        with pytest.raises(ImageError, match="above the pixel limit"):
            opener(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow alone would refuse 2000 > 2 x 500
    set_max_pixels(2000)
    assert open_image(image).size == (50, 40) and load_for_model(image, 384, True).size[0] > 0
    assert Image.MAX_IMAGE_PIXELS == 500  # Pillow's own setting is left as it was
    set_max_pixels(None)
    with pytest.raises(ImageError, match="refused as too big.*--max-pixels"):
        open_image(image)


def test_environment_variable(tmp_path, monkeypatch):
    image = _image(tmp_path / "a.png", 30, 30)
    monkeypatch.setenv("JTP_MAX_PIXELS", "800")
    assert max_pixels() == 800
    with pytest.raises(ImageError, match="above the pixel limit"):
        open_image(image)
    monkeypatch.setenv("JTP_MAX_PIXELS", "0")  # no limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert open_image(image).size == (30, 30)
    monkeypatch.setenv("JTP_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="JTP_MAX_PIXELS"):
        open_image(image)
