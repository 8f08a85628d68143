"""Dataset captioning with the local engine: sources, rows, resume, bad input, merge, exporters, review."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

pa = pytest.importorskip("pyarrow", reason="dataset jobs write Parquet: pip install pyarrow")
import pyarrow.parquet as pq  # noqa: E402
from dataset_fixtures import image_bytes, write_folder, write_parquet, write_shard  # noqa: E402
from PIL import Image  # noqa: E402

from jtp_core import load_tagger, tag_results  # noqa: E402
from jtp_core.datasets import DatasetJob, MergeSpec, SourceSpec, local_engine  # noqa: E402
from jtp_core.datasets.exporters import export, read_result  # noqa: E402
from jtp_core.datasets.job import MANIFEST, JobError  # noqa: E402
from jtp_core.datasets.local_engine import run_local  # noqa: E402
from jtp_core.datasets.review import diverse_sample, write_review  # noqa: E402
from jtp_core.tags.postprocess import TagOptions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.5


def job(sources, model, output, **kwargs) -> DatasetJob:
    source = SourceSpec(tuple(str(s) for s in sources), unit_size=kwargs.pop("unit_size", 3))
    options = kwargs.pop("options", TagOptions(threshold=THRESHOLD))
    return DatasetJob(source=source, model=str(model), output=output, options=options, device="cpu", **kwargs)


def rows_by_key(output: Path) -> dict[str, dict]:
    rows = read_result(output).to_pylist()
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    return {row["key"]: row for row in rows}


def expected_tags(tagger, data: bytes) -> list[tuple[str, float]]:
    """From the facts: PILOT keeps scores strictly above the threshold, highest first."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        probs = tagger.predict_pils([image])[0].tolist()
    kept = [(tag, p) for tag, p in zip(tagger.tags, probs, strict=True) if p > THRESHOLD]
    return sorted(kept, key=lambda item: -item[1])


def test_folder_rows_hold_the_models_tags_and_errors(tmp_path, linear_checkpoint, tiny_tagger):
    images = write_folder(tmp_path / "ds", 7)
    (tmp_path / "ds" / "broken.png").write_bytes(b"\x89PNG not really")
    summary = run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    assert (summary.images, summary.errors, summary.units_done) == (8, 1, 3)
    rows = rows_by_key(tmp_path / "out")
    assert "not a readable image" in rows["broken.png"]["error"] and rows["broken.png"]["tags"] == []
    assert set(rows) == {"broken.png"} | {image.relative_to(tmp_path / "ds").as_posix() for image in images}
    for image in images:
        row = rows[image.relative_to(tmp_path / "ds").as_posix()]
        want = expected_tags(tiny_tagger, image.read_bytes())
        assert row["tags"] == [tag for tag, _ in want]
        assert row["scores"] == pytest.approx([score for _, score in want], abs=1e-5)
        assert row["caption"] == ", ".join(tag.replace("_", " ").replace("(", r"\(").replace(")", r"\)")
                                           for tag, _ in want)
        with Image.open(image) as opened:
            assert (row["width"], row["height"]) == opened.size
        assert row["error"] == "" and row["model"] == "TINY_PILOT" and row["revision"]
        assert all(THRESHOLD - 0.1 < s <= THRESHOLD for s in row["near_scores"])


def test_shard_and_parquet_sources(tmp_path, linear_checkpoint, tiny_tagger):
    write_shard(tmp_path / "a.tar", [1, 2, 3, 4], corrupt={3})
    good = tmp_path / "b.tar"
    write_shard(good, [5, 6])
    truncated = tmp_path / "c.tar"
    truncated.write_bytes(good.read_bytes()[:1500])  # cut inside the first member's data
    write_parquet(tmp_path / "t.parquet", [7, 8, 9])
    sources = [tmp_path / "*.tar", tmp_path / "t.parquet"]
    summary = run_local(job(sources, linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    rows = rows_by_key(tmp_path / "out")
    assert set(rows) == {"000001", "000002", "000003", "000004", "000005", "000006", "c.tar#damaged",
                         "p00007", "p00008", "p00009"}
    assert rows["000003"]["error"].startswith("not a readable image")
    assert "damaged" in rows["c.tar#damaged"]["error"]
    assert rows["p00008"]["tags"] == [tag for tag, _ in expected_tags(tiny_tagger, image_bytes(8, "JPEG"))]
    assert rows["000002"]["tags"] == [tag for tag, _ in expected_tags(tiny_tagger, image_bytes(2, "JPEG"))]
    assert rows["000005"]["source"] == str(good.resolve())
    assert summary.errors == 2 and summary.units_done == 4


def test_rerun_skips_done_units_and_changed_options_are_refused(tmp_path, linear_checkpoint, tiny_tagger):
    write_folder(tmp_path / "ds", 5)
    first = run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    before = (tmp_path / "out" / MANIFEST).read_text()
    again = run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    assert (first.images, again.images, again.units_skipped) == (5, 0, 2)
    assert (tmp_path / "out" / MANIFEST).read_text() == before
    changed = job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out", options=TagOptions(threshold=0.3))
    with pytest.raises(JobError, match=r"options\.threshold: 0\.5 → 0\.3"):
        run_local(changed, progress=False, tagger=tiny_tagger)
    with pytest.raises(JobError, match="not empty and holds no job"):
        run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "ds"), progress=False, tagger=tiny_tagger)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jtp_core", *args]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JTP_MODELS_DIR": "/nonexistent", "HF_HUB_OFFLINE": "1"}


def test_killed_job_resumes_to_the_same_rows(tmp_path, linear_checkpoint):
    write_folder(tmp_path / "ds", 60, sub=False)
    common = ["--model", str(linear_checkpoint), "--device", "cpu", "--threshold", "0.5", "--unit-size", "2",
              "--no-progress", "--offline", "--batch-size", "2", "--workers", "1"]
    killed = tmp_path / "killed"
    process = subprocess.Popen(cli("dataset", "caption", str(tmp_path / "ds"), "-o", str(killed), *common),
                               env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list((killed / "parts").glob("*.parquet"))) >= 3:
            break
        time.sleep(0.01)
    assert process.poll() is None, f"the job ended before it could be killed: {process.stderr.read()!r}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = json.loads((killed / MANIFEST).read_text())["done"]
    parts = list((killed / "parts").glob("*.parquet"))
    # a part renamed into place just before the kill, with the manifest not yet saved, still counts as done
    assert 0 < len(done) <= len(parts) < 30
    resumed = subprocess.run(cli("dataset", "caption", str(tmp_path / "ds"), "-o", str(killed), *common),
                             env=cli_env(), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(parts)} done before" in resumed.stdout
    reference = subprocess.run(cli("dataset", "caption", str(tmp_path / "ds"), "-o", str(tmp_path / "ref"), *common),
                               env=cli_env(), cwd=ROOT, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    assert read_result(killed).to_pylist() == read_result(tmp_path / "ref").to_pylist()
    assert len(rows_by_key(killed)) == 60
    # what the kill interrupted may leave a hidden temp file of the killed process (never read; a later run
    # removes it once it is 10 s old: a fresh one could be another host's write in progress); nothing else
    left = [path.name for path in killed.rglob("*") if path.name.endswith(".tmp")]
    assert all(name.startswith(".") and f".jtp{process.pid}." in name for name in left), left


def test_parquet_without_the_column_is_a_clear_error(tmp_path, linear_checkpoint, capsys):
    pq.write_table(pa.table({"key": ["a"], "caption": ["x"]}), tmp_path / "t.parquet")
    from jtp_core.cli.main import main

    code = main(["dataset", "caption", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out"), "--model",
                 str(linear_checkpoint), "--offline", "--image-column", "jpg", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "t.parquet has no column 'jpg' (image bytes); its columns: key, caption" in err


def test_full_disk_keeps_what_was_done(tmp_path, linear_checkpoint, tiny_tagger, monkeypatch):
    write_folder(tmp_path / "ds", 7)
    real = local_engine.write_table_atomic
    calls = []

    def failing(table, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        real(table, target)

    monkeypatch.setattr(local_engine, "write_table_atomic", failing)
    with pytest.raises(JobError, match=r"No space left on device \(the disk is full\)\. The 1 units done so far"):
        run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    assert len(json.loads((tmp_path / "out" / MANIFEST).read_text())["done"]) == 1
    monkeypatch.setattr(local_engine, "write_table_atomic", real)
    summary = run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    assert (summary.units_skipped, summary.units_done, summary.images) == (1, 2, 4)
    assert len(rows_by_key(tmp_path / "out")) == 7


def test_merge_keeps_human_tags_and_reports_what_was_added(tmp_path, linear_checkpoint, tiny_tagger):
    seeds = [1, 2, 3]
    plain = tmp_path / "plain"
    write_shard(tmp_path / "s.tar", seeds)
    run_local(job([tmp_path / "s.tar"], linear_checkpoint, plain), progress=False, tagger=tiny_tagger)
    model_tags = {row["key"]: row["tags"] for row in read_result(plain).to_pylist()}
    first = model_tags["000001"]
    assert len(first) >= 3, "the tiny model should keep a few tags at 0.5"
    # a human caption with one model tag in another spelling, one through an alias, and its own tag
    alias_target = first[1]
    human = f"{first[0].replace('_', ' ').upper()}, my_oc, old_{alias_target}"
    write_shard(tmp_path / "h.tar", seeds, captions={1: human})
    aliases = tmp_path / "aliases.csv"
    aliases.write_text(f"antecedent_name,consequent_name,status\nold_{alias_target},{alias_target},active\n")
    table = tmp_path / "tags.csv"
    table.write_text(f"tag,category,implications\nmy_oc,4,{first[2]}\n")  # my_oc implies the third model tag
    from jtp_core.tags.tag_table import read_tag_table

    options = TagOptions(threshold=THRESHOLD, tag_table=read_tag_table(table))
    merge = MergeSpec(existing="member:txt", drop_implied=True, aliases=str(aliases))
    run_local(job([tmp_path / "h.tar"], linear_checkpoint, tmp_path / "m", options=options, merge=merge),
              progress=False, tagger=tiny_tagger)
    rows = rows_by_key(tmp_path / "m")
    row = rows["000001"]
    assert row["existing"] == human
    expected_added = [tag.replace("_", " ").replace("(", r"\(").replace(")", r"\)") for tag in first[3:]]
    assert row["added"] == expected_added
    assert row["caption"] == ", ".join([human, *expected_added])
    assert rows["000002"]["existing"] is None and rows["000002"]["tags"] == model_tags["000002"]


def test_exporters_read_back_with_each_formats_reader(tmp_path, linear_checkpoint, tiny_tagger):
    webdataset = pytest.importorskip("webdataset", reason="reads the exported shards: pip install webdataset")
    images = write_folder(tmp_path / "ds", 4)
    run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False, tagger=tiny_tagger)
    rows = rows_by_key(tmp_path / "out")
    by_path = {row["path"]: row for row in rows.values()}

    export(tmp_path / "out", "txt")
    for image in images:
        assert image.with_suffix(".txt").read_text() == by_path[str(image.resolve())]["caption"]

    existing = {"img001": {"caption": "a photo", "tags": "old"}, "other": {"tags": "kept"}}
    (tmp_path / "meta.json").write_text(json.dumps(existing))
    export(tmp_path / "out", "kohya", tmp_path / "meta.json")
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["other"] == {"tags": "kept"} and meta["img001"]["caption"] == "a photo"
    for image in images:
        assert meta[image.stem] == {**existing.get(image.stem, {}), "tags": by_path[str(image.resolve())]["caption"]}

    export(tmp_path / "out", "simpletuner", tmp_path / "st.parquet")
    table = pq.read_table(tmp_path / "st.parquet").to_pylist()
    assert {row["filename"] for row in table} == set(rows)
    for row in table:
        assert (row["caption"], row["width"], row["height"]) == (
            rows[row["filename"]]["caption"], rows[row["filename"]]["width"], rows[row["filename"]]["height"])

    export(tmp_path / "out", "hf")
    lines = [json.loads(line) for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert {line["file_name"] for line in lines} == set(rows)
    assert all(line["text"] == rows[line["file_name"]]["caption"] for line in lines)

    write_shard(tmp_path / "in.tar", [11, 12, 13], corrupt={12})
    original = (tmp_path / "in.tar").read_bytes()
    run_local(job([tmp_path / "in.tar"], linear_checkpoint, tmp_path / "wout"), progress=False, tagger=tiny_tagger)
    shard_rows = rows_by_key(tmp_path / "wout")
    export(tmp_path / "wout", "webdataset", tmp_path / "shards")
    assert (tmp_path / "in.tar").read_bytes() == original
    samples = list(webdataset.WebDataset(str(tmp_path / "shards" / "in.tar"), shardshuffle=False))
    assert [sample["__key__"] for sample in samples] == ["000011", "000012", "000013"]
    for sample in samples:
        row = shard_rows[sample["__key__"]]
        assert sample["jpg"] == image_bytes(int(sample["__key__"]), "JPEG") or sample["__key__"] == "000012"
        if row["error"]:
            assert "jtp.txt" not in sample
            continue
        assert sample["jtp.txt"].decode() == row["caption"]
        record = json.loads(sample["jtp.json"])
        assert record["tags"] == row["tags"] and record["scores"] == pytest.approx(row["scores"])


def test_review_sheet_and_diverse_sample(tmp_path, linear_checkpoint, tiny_tagger):
    import numpy as np

    cluster = np.tile([1.0, 0.0, 0.0], (10, 1)) + np.random.default_rng(0).normal(0, 0.01, (10, 3))
    vectors = np.vstack([cluster, [[0.0, 0.0, 1.0]]])
    picked = diverse_sample(vectors, 3, seed=1)
    assert len(set(picked)) == 3 and 10 in picked[:2]  # the outlier comes first or second

    write_folder(tmp_path / "ds", 6)
    write_shard(tmp_path / "s.tar", [20, 21])
    run_local(job([tmp_path / "ds", tmp_path / "s.tar"], linear_checkpoint, tmp_path / "out"), progress=False,
              tagger=tiny_tagger)
    count = write_review(tmp_path / "out", tmp_path / "review.html", count=5)
    page = (tmp_path / "review.html").read_text()
    assert count == 5 and page.count("<figure>") == 5
    assert page.count("data:image/jpeg;base64,") == 5  # every picture embedded, folder or shard
    assert 'class="kept near"' in page or 'class="below"' in page


def test_cli_caption_export_review(tmp_path, linear_checkpoint, capsys):
    from jtp_core.cli.main import main

    write_folder(tmp_path / "ds", 3)
    args = ["--model", str(linear_checkpoint), "--device", "cpu", "--offline", "--no-progress"]
    assert main(["dataset", "caption", str(tmp_path / "ds"), "-o", str(tmp_path / "out"), *args]) == 0
    out = capsys.readouterr().out
    assert "Done (local): 3 images" in out and "images/s per device (1), 0 errors" in out
    assert str(tmp_path / "out" / "parts") in out
    assert main(["dataset", "export", str(tmp_path / "out"), "--format", "kohya"]) == 0
    assert len(json.loads((tmp_path / "out" / "meta_jtp.json").read_text())) == 3
    assert main(["review", str(tmp_path / "out"), "-n", "2"]) == 0
    assert (tmp_path / "out" / "review.html").read_text().count("<figure>") == 2


def test_damaged_tar_is_detected_by_the_stdlib_too(tmp_path):
    # guards the fixture used above: the truncated shard really is unreadable past its start
    write_shard(tmp_path / "b.tar", [5, 6])
    cut = tmp_path / "c.tar"
    cut.write_bytes((tmp_path / "b.tar").read_bytes()[:1500])
    with pytest.raises(tarfile.TarError), tarfile.open(cut) as tar:
        for member in tar:
            tar.extractfile(member).read()


def test_hydra_rows_follow_the_models_own_rules(tmp_path):
    """A Hydra 3.5 model's rows use its calibrated thresholds (+ inherit), not JTP-1's fixed rule: a tag whose
    validation never qualifies is neither kept nor "near", whatever its score."""
    from hydra_checkpoints import write_hydra_checkpoint
    from safetensors.torch import load_file, save_file

    from jtp_core.families.header import read_header

    path = write_hydra_checkpoint(tmp_path / "H35" / "h.safetensors", "rr_hydra2", 12, seed=6)
    tensors, metadata = load_file(str(path)), read_header(path).metadata
    counts = torch.zeros(12, 9, 4)
    counts[..., 0], counts[..., 1], counts[..., 2], counts[..., 3] = 50, 5, 500, 5
    counts[3, :, 0] = 0  # tag 3 never reaches the precision floor
    tensors["validation"] = counts
    save_file(tensors, str(path), metadata=metadata)
    tagger = load_tagger(path, device="cpu", sequence_length=64)
    write_folder(tmp_path / "ds", 3, sub=False)
    run_local(job([tmp_path / "ds"], path, tmp_path / "out", options=TagOptions(max_tags=0)), progress=False,
              tagger=tagger)
    rows = rows_by_key(tmp_path / "out")
    never = tagger.tags[3]
    assert rows and all(never not in row["tags"] and never not in row["near_tags"] for row in rows.values())
    from jtp_core.tags.selection import tag_thresholds

    probs = tagger.predict_pils([Image.open(row["path"]) for row in rows.values()])
    limits = tag_thresholds(tagger.labels, TagOptions())
    assert probs[:, 3].max() > limits[torch.isfinite(limits)].min()  # a fixed threshold would have kept it
    assert all(row["tags"] for row in rows.values())
    expected = {row["path"]: tag_results(tagger.predict_pils([Image.open(row["path"])]), tagger.labels,
                                         TagOptions(max_tags=0))[0].text for row in rows.values()}
    assert {row["path"]: row["caption"] for row in rows.values()} == expected
