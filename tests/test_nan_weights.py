"""A checkpoint with NaN weights: the tagger refuses its scores (issue #14, item 9). ``tag`` exits non-zero saying
NaN; ``caption`` writes no caption file, not even an empty one, and leaves existing captions alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoints import build_timm_model, tiny_tags
from PIL import Image
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "NAN_PILOT"
    folder.mkdir()
    model = build_timm_model("linear", 16)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    state["head.weight"] = torch.full_like(state["head.weight"], float("nan"))  # broken weights, valid file
    save_file(state, str(folder / "tiny-linear-vit_so400m_patch14_siglip_384.safetensors"))
    (folder / "tags.json").write_text(json.dumps({tag: index for index, tag in enumerate(tiny_tags(16))}))
    return folder


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jtp_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.new("RGB", (32, 40), (40 * index, 90, 200)).save(path)
        paths.append(path)
    return paths


def test_tag_cli_exits_non_zero_saying_nan(tmp_path, nan_checkpoint):
    (image,) = _images(tmp_path, 1)
    run = _run("tag", str(image), "--model", str(nan_checkpoint), "--device", "cpu")
    assert run.returncode != 0
    assert "NaN" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.strip() == ""  # no tags were printed


def test_caption_cli_writes_no_caption_files(tmp_path, nan_checkpoint):
    images = _images(tmp_path / "set", 3)
    existing = images[0].with_suffix(".txt")
    existing.write_text("hand-written caption")
    run = _run("caption", str(tmp_path / "set"), "--mode", "overwrite", "--model", str(nan_checkpoint),
               "--device", "cpu", "--no-progress", "--batch-size", "1")
    assert run.returncode != 0 and "NaN" in run.stderr, run.stderr
    assert existing.read_text() == "hand-written caption"
    assert [path.with_suffix(".txt").exists() for path in images[1:]] == [False, False]  # not even empty ones
    assert not [path.name for path in (tmp_path / "set").iterdir() if path.name.endswith(".tmp")]
