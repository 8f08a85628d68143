"""``python -m jtp_core caption`` as a user runs it, including a run killed part-way with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from jtp_core import TagOptions
from jtp_core.captioning.caption import CaptionRequest, caption_images
from jtp_core.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jtp_core", "caption", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        **kwargs,
    )


def make_images(folder: Path, count: int, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index:03d}.jpg"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def test_cli_captions_a_folder_with_summary_and_report(tmp_path, linear_checkpoint):
    make_images(tmp_path / "set" / "sub", 3)
    (tmp_path / "set" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = tmp_path / "report.json"
    run = cli(str(tmp_path / "set"), "--recursive", "--model", str(linear_checkpoint), "--device", "cpu",
              "--trigger", "ohwx", "--threshold", "0.4", "--report", str(report))
    assert run.returncode == 1, run.stderr  # one file failed
    assert "3 captioned, 0 skipped" in run.stdout and "broken.png" in run.stdout
    assert "captioning" in run.stderr  # the progress bar
    captions = sorted((tmp_path / "set" / "sub").glob("*.txt"))
    assert len(captions) == 3 and all(path.read_text().startswith("ohwx, ") for path in captions)
    assert json.loads(report.read_text())["tagged"] == 3


def test_cli_rerun_loads_no_model_when_everything_is_captioned(tmp_path, capsys):
    make_images(tmp_path / "set", 2)
    (tmp_path / "set" / "000.txt").write_text("done")
    assert main(["caption", str(tmp_path / "set"), "--model", "/no/such/model"]) == 2
    assert "/no/such/model" in capsys.readouterr().err  # 001.jpg still needs the model
    (tmp_path / "set" / "001.txt").write_text("done")
    assert main(["caption", str(tmp_path / "set"), "--model", "/no/such/model"]) == 0
    assert "0 captioned, 2 skipped" in capsys.readouterr().out  # finished folder: no model is loaded


def test_cli_reports_a_missing_folder(tmp_path, capsys):
    assert main(["caption", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_sigkill_mid_run_leaves_no_partial_caption_and_a_rerun_finishes(
    tmp_path, linear_checkpoint, tiny_tagger, capsys
):
    images = make_images(tmp_path / "set", 48, size=192)
    args = [str(tmp_path / "set"), "--model", str(linear_checkpoint), "--device", "cpu", "--threshold", "0",
            "--max-tags", "0", "--batch-size", "1", "--workers", "1", "--no-progress"]
    process = subprocess.Popen([sys.executable, "-m", "jtp_core", "caption", *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while not list((tmp_path / "set").glob("*.txt")) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)  # let it get into the middle of later writes
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    after_kill = {path.name: path.read_bytes() for path in (tmp_path / "set").glob("*.txt")}
    assert 0 < len(after_kill) < len(images), "the kill should land part-way through the run"
    leftovers = [p.name for p in (tmp_path / "set").iterdir() if p.suffix not in (".jpg", ".txt")]
    # hidden temp files at most, and the job record
    assert all(name.startswith(".") and name.endswith((".tmp", ".jtp-caption-job.jsonl")) for name in leftovers)

    assert main(["caption", *args]) == 0
    summary = capsys.readouterr().out
    captioned = len(images) - len(after_kill)
    # the rerun resumes: images recorded as done are left out, captions written but not yet recorded are skipped
    assert f"Done: {captioned} captioned" in summary
    resumed = int(summary.split("captioned, ")[1].split(" done earlier")[0]) if "done earlier" in summary else 0
    assert f"{len(after_kill) - resumed} skipped" in summary

    # every caption that existed after the kill is complete: byte for byte what an uninterrupted run writes
    reference = CaptionRequest([tmp_path / "set"], output_dir=tmp_path / "reference", batch_size=1,
                               options=TagOptions(threshold=0, max_tags=0))
    assert caption_images(tiny_tagger, reference).tagged == len(images)
    for name, data in after_kill.items():
        assert data == (tmp_path / "reference" / name).read_bytes(), name
    assert all((tmp_path / "set" / f"{path.stem}.txt").read_bytes() == (tmp_path / "reference" / f"{path.stem}.txt")
               .read_bytes() for path in images)
