"""Caption jobs resume in every mode, outputs are checked before the model runs, several inputs mirror into the
output folder, and our stale temp files are cleaned (issue #14, items 5-8)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jtp_core import JTPError, TagOptions
from jtp_core.captioning.caption import CaptionRequest, caption_images, plan_captions, run_plan
from jtp_core.cli.main import main

RECORD = ".jtp-caption-job.jsonl"


def make_images(folder: Path, count: int, old_caption: str | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    paths = []
    for index in range(count):
        path = folder / f"{index:02d}.png"
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(path)
        if old_caption is not None:
            path.with_suffix(".txt").write_text(old_caption)
        paths.append(path)
    return paths


def stop_after(batches: int):
    seen = []

    def on_progress(done, total):
        seen.append(done)
        if len(seen) == batches:
            raise KeyboardInterrupt

    return on_progress


@pytest.mark.parametrize("mode", ["overwrite", "append", "prepend", "skip"])
def test_interrupted_job_resumes_in_every_mode(tmp_path, tiny_tagger, mode):
    images = make_images(tmp_path / "set", 12, old_caption="old words" if mode != "skip" else None)
    request = CaptionRequest([tmp_path / "set"], mode=mode, batch_size=1, options=TagOptions(threshold=0),
                             model_id="tiny")
    with pytest.raises(KeyboardInterrupt):
        run_plan(tiny_tagger, request, plan_captions(request), stop_after(2))
    assert (tmp_path / "set" / RECORD).is_file()
    after_stop = {path: path.with_suffix(".txt").read_text() for path in images[:2]}

    plan = plan_captions(request)  # the same request again
    assert plan.notes == ["resuming: 2 of 12 done, 10 left"] and len(plan.jobs) == 10
    summary = run_plan(tiny_tagger, request, plan)
    assert (summary.tagged, summary.resumed, summary.skipped) == (10, 2, 0)
    assert "10 captioned, 2 done earlier in this job" in summary.to_text()
    for path in images:
        text = path.with_suffix(".txt").read_text()
        assert text != "old words" and (mode in ("overwrite", "skip") or text.count("old words") == 1), text
        if path in after_stop:
            assert text == after_stop[path]  # done before the stop: not touched again
    assert not (tmp_path / "set" / RECORD).exists()  # complete: the record is removed

    again = plan_captions(request)  # a finished job: the same command is a new job
    assert again.notes == [] and again.resumed == 0
    assert len(again.jobs) == (0 if mode == "skip" else 12)


def test_changed_options_start_a_new_job_and_say_so(tmp_path, tiny_tagger):
    make_images(tmp_path / "set", 4, old_caption="old")
    request = CaptionRequest([tmp_path / "set"], mode="overwrite", batch_size=1, model_id="tiny")
    with pytest.raises(KeyboardInterrupt):
        run_plan(tiny_tagger, request, plan_captions(request), stop_after(1))
    for changed in (
        CaptionRequest([tmp_path / "set"], mode="overwrite", batch_size=1, model_id="tiny",
                       options=TagOptions(threshold=0.5)),
        CaptionRequest([tmp_path / "set"], mode="append", batch_size=1, model_id="tiny"),
        CaptionRequest([tmp_path / "set"], mode="overwrite", batch_size=1, model_id="other model"),
    ):
        plan = plan_captions(changed)
        assert plan.resumed == 0 and len(plan.jobs) == 4
        assert len(plan.notes) == 1 and "starting a new job" in plan.notes[0]
    assert plan_captions(request).resumed == 1  # planning alone did not replace the record


def test_a_torn_last_line_is_ignored(tmp_path, tiny_tagger):
    make_images(tmp_path / "set", 3, old_caption="old")
    request = CaptionRequest([tmp_path / "set"], mode="overwrite", batch_size=1, model_id="tiny")
    with pytest.raises(KeyboardInterrupt):
        run_plan(tiny_tagger, request, plan_captions(request), stop_after(2))
    record = tmp_path / "set" / RECORD
    with open(record, "a") as handle:
        handle.write('{"done": ["02.t')  # a kill in the middle of an append
    lines = record.read_text().splitlines()
    assert json.loads(lines[0])["fingerprint"]["mode"] == "overwrite" and len(lines) == 4
    assert plan_captions(request).resumed == 2


def test_cli_interrupt_says_run_the_same_command_and_the_rerun_resumes(tmp_path, linear_checkpoint, capsys,
                                                                       monkeypatch):
    from jtp_core.cli import caption as caption_cli

    images = make_images(tmp_path / "set", 12, old_caption="old")
    args = ["caption", str(tmp_path / "set"), "--mode", "overwrite", "--model", str(linear_checkpoint),
            "--device", "cpu", "--batch-size", "1", "--workers", "0", "--no-progress"]
    calls = []
    original = caption_cli.ProgressBar.__call__

    def interrupting(self, done, total):
        original(self, done, total)
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(caption_cli.ProgressBar, "__call__", interrupting)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "same command again" in err and "10 left" in err and "--mode skip" not in err
    monkeypatch.setattr(caption_cli.ProgressBar, "__call__", original)
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "resuming: 2 of 12 done, 10 left" in err and "10 captioned, 2 done earlier" in out
    assert all(path.with_suffix(".txt").read_text() != "old" for path in images)


# item 6: several inputs into one output folder -------------------------------------------------------------

def test_several_inputs_mirror_into_the_output_folder(tmp_path, tiny_tagger):
    make_images(tmp_path / "a", 2)
    make_images(tmp_path / "b", 2)
    single = tmp_path / "c" / "solo.png"
    make_images(tmp_path / "c", 1)[0].rename(single)
    out = tmp_path / "out"
    summary = caption_images(tiny_tagger, CaptionRequest([tmp_path / "a", tmp_path / "b", single], output_dir=out))
    assert summary.failed == [] and summary.tagged == 5
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*.txt"))
    assert written == ["a/00.txt", "a/01.txt", "b/00.txt", "b/01.txt", "solo.txt"]
    # one input: its tree is mirrored straight into the output folder, as before
    caption_images(tiny_tagger, CaptionRequest([tmp_path / "a"], output_dir=tmp_path / "one"))
    assert sorted(path.name for path in (tmp_path / "one").iterdir() if not path.name.startswith(".")) == [
        "00.txt", "01.txt"]


def test_inputs_of_the_same_name_are_refused_up_front_naming_both(tmp_path):
    make_images(tmp_path / "x" / "set", 1)
    make_images(tmp_path / "y" / "set", 1)
    with pytest.raises(JTPError) as caught:
        plan_captions(CaptionRequest([tmp_path / "x" / "set", tmp_path / "y" / "set"], output_dir=tmp_path / "o"))
    assert str(tmp_path / "x" / "set") in str(caught.value) and str(tmp_path / "y" / "set") in str(caught.value)
    assert not (tmp_path / "o").exists()


# item 7: output locations are checked before the model is loaded ------------------------------------------

def _blocker(tmp_path: Path) -> Path:
    # a regular file where a folder should be: unwritable even for root, unlike chmod
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    return blocker


def test_cli_unwritable_caption_folder_fails_before_the_model_loads(tmp_path, capsys):
    make_images(tmp_path / "set", 2)
    code = main(["caption", str(tmp_path / "set"), "--output", str(_blocker(tmp_path) / "out"),
                 "--model", "/no/such/model"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write captions in" in err and "blocker" in err
    assert "/no/such/model" not in err  # failed before the model was even looked up


def test_cli_unwritable_report_fails_before_the_model_loads(tmp_path, capsys):
    make_images(tmp_path / "set", 2)
    code = main(["caption", str(tmp_path / "set"), "--report", str(_blocker(tmp_path) / "report.json"),
                 "--model", "/no/such/model"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write the report" in err and "/no/such/model" not in err
    assert not list((tmp_path / "set").glob("*.txt"))


def test_caption_node_unwritable_output_fails_before_the_model_is_loaded(comfy, linear_checkpoint, tmp_path):
    import shutil
    import sys

    standin, pack = comfy
    shutil.copytree(linear_checkpoint, standin.models_dir / "jtp" / "TINY_PILOT")
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_PILOT", "cpu", "fp32")
    make_images(tmp_path / "set", 2)
    node = pack.NODE_CLASS_MAPPINGS["JTPCaptionFolder"]
    spec = node.INPUT_TYPES()
    inputs = {key: opts["default"] for section in ("required", "optional")
              for key, (_, opts) in spec.get(section, {}).items() if key != "jtp_model" and "default" in opts}
    inputs.update(folder=str(tmp_path / "set"), output_folder=str(_blocker(tmp_path) / "out"), batch_size=1)
    error = sys.modules[f"{pack.__name__}.jtp_core.errors"].JTPError
    with pytest.raises(error, match="cannot write captions"):
        node().caption(jtp_model=model, **inputs)
    assert standin.loaded == [] and standin.progress == []  # the model never went onto the device


# item 8: temp files a killed run left ----------------------------------------------------------------------

def test_planning_removes_only_our_stale_temp_files(tmp_path):
    make_images(tmp_path / "set", 1)
    folder = tmp_path / "set"
    old = time.time() - 60
    dead_pid = 2**22 + 12345  # above the usual pid_max of 4194304: no such process
    ours_dead = folder / f".00.txt.jtp{dead_pid}.abcd_123.tmp"
    ours_old_format = folder / ".00.txt.k2j4h5g6.tmp"
    ours_live = folder / f".00.txt.jtp{os.getpid()}.zzzzzzzz.tmp"  # a writer that is still running
    fresh = folder / f".00.txt.jtp{dead_pid}.yyyyyyyy.tmp"  # just made: maybe another host's in-flight write
    not_ours = [folder / ".00.png.abcdefgh.tmp", folder / ".notes.md.abcdefgh.tmp", folder / "x.tmp"]
    for path in [ours_dead, ours_old_format, ours_live, fresh, *not_ours]:
        path.write_text("partial")
        if path is not fresh:
            os.utime(path, (old, old))
    plan_captions(CaptionRequest([folder]))
    left = {path.name for path in folder.iterdir()}
    assert ours_dead.name not in left and ours_old_format.name not in left
    assert {ours_live.name, fresh.name, *(path.name for path in not_ours)} <= left
