"""The CLI as a user runs it: a subprocess on real files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jtp_core", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 40), (200, 30, 30)).save(folder / "a.png")
    Image.new("RGBA", (30, 90), (10, 200, 30, 128)).save(folder / "b.webp")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_single_image_prints_only_its_tags(images, linear_checkpoint):
    result = run_cli("tag", images / "a.png", "--model", linear_checkpoint, "--threshold", "0", "--max-tags", "3")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().split(", ")) == 3 and "\t" not in result.stdout


def test_folder_json_reports_broken_file_and_goes_on(images, linear_checkpoint):
    result = run_cli("tag", images, "--model", linear_checkpoint, "--json", "--threshold", "0.1")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["a.png", "b.webp"]
    assert all(line["tags"] and all(score > 0.1 for score in line["scores"].values()) for line in lines)
    assert "broken.jpg" in result.stderr and result.returncode == 1


def test_bad_model_is_a_clear_error(images, tmp_path):
    result = run_cli("tag", images / "a.png", "--model", "NOT_A_MODEL", "--models-dir", tmp_path)
    assert result.returncode == 2
    assert "unknown model 'NOT_A_MODEL'" in result.stderr and "Traceback" not in result.stderr
