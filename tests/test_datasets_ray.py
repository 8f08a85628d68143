"""The Ray Data engine on a local Ray instance (2 CPUs, the tiny model): same rows as the local engine.

Ray starts once for the module (about 15 s on two cores); skipped with the reason when Ray Data is absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", reason="dataset jobs write Parquet: pip install pyarrow")
ray = pytest.importorskip("ray", reason="the Ray engine needs Ray Data: pip install 'ray[data]'")
from dataset_fixtures import write_folder, write_parquet, write_shard  # noqa: E402

from jtp_core.datasets import DatasetJob, MergeSpec, SourceSpec  # noqa: E402
from jtp_core.datasets.exporters import read_result  # noqa: E402
from jtp_core.datasets.local_engine import run_local  # noqa: E402
from jtp_core.datasets.ray_engine import connect, run_ray  # noqa: E402
from jtp_core.tags.postprocess import TagOptions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    connect(None, num_cpus=2)
    yield
    ray.shutdown()


def job(sources, model, output, unit_size=3, merge=None) -> DatasetJob:
    return DatasetJob(
        source=SourceSpec(tuple(str(s) for s in sources), unit_size=unit_size), model=str(model), output=output,
        options=TagOptions(threshold=0.5), merge=merge or MergeSpec(), device="cpu",
    )


def comparable(output: Path) -> list[dict]:
    rows = read_result(output).to_pylist()
    assert len({(row["source"], row["key"]) for row in rows}) == len(rows), "a row was written twice"
    return rows


def test_ray_rows_equal_local_rows_for_folders_shards_and_parquet(tmp_path, linear_checkpoint, ray_instance):
    write_folder(tmp_path / "ds", 5)
    (tmp_path / "ds" / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    write_shard(tmp_path / "a.tar", [1, 2, 3], captions={1: "my_oc, blue eyes"}, corrupt={2})
    write_parquet(tmp_path / "t.parquet", [4, 5, 6])
    sources = [tmp_path / "ds", tmp_path / "a.tar", tmp_path / "t.parquet"]
    local = run_local(job(sources, linear_checkpoint, tmp_path / "local"), progress=False)
    remote = run_ray(job(sources, linear_checkpoint, tmp_path / "ray"), progress=False, wave_units=2)
    assert (remote.images, remote.errors) == (local.images, local.errors) == (12, 2)
    assert remote.units_done == local.units_done
    rows_local, rows_ray = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert [(r["source"], r["key"]) for r in rows_ray] == [(r["source"], r["key"]) for r in rows_local]
    for a, b in zip(rows_local, rows_ray, strict=True):
        for name in ("path", "unit", "model", "revision", "tags", "caption", "width", "height", "error", "existing"):
            assert a[name] == b[name], (a["key"], name)
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    # the merge option reads a shard's txt member in the Ray decode tasks too
    merged = job([tmp_path / "a.tar"], linear_checkpoint, tmp_path / "merged", merge=MergeSpec("member:txt"))
    run_ray(merged, progress=False)
    row = next(r for r in comparable(tmp_path / "merged") if r["key"] == "000001")
    assert row["existing"] == "my_oc, blue eyes" and row["caption"].startswith("my_oc, blue eyes")


def test_rerun_with_ray_skips_what_the_local_engine_did(tmp_path, linear_checkpoint, ray_instance):
    write_folder(tmp_path / "ds", 7)
    first = job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out")
    run_local(first, progress=False)
    summary = run_ray(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out"), progress=False)
    assert (summary.images, summary.units_skipped, summary.units_done) == (0, 3, 0)
    assert len(comparable(tmp_path / "out")) == 7


def test_unreachable_cluster_is_a_clear_error(tmp_path, linear_checkpoint):
    write_folder(tmp_path / "ds", 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JTP_MODELS_DIR": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-m", "jtp_core", "dataset", "caption", str(tmp_path / "ds"), "-o", str(tmp_path / "out"),
         "--engine", "ray", "--address", "127.0.0.1:9", "--model", str(linear_checkpoint), "--offline"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in result.stderr


def test_killed_ray_job_resumes_to_exactly_the_local_rows(tmp_path, linear_checkpoint):
    import json
    import signal
    import time

    from jtp_core.datasets.job import MANIFEST

    write_folder(tmp_path / "ds", 18, sub=False)
    run_local(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "local", unit_size=6), progress=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JTP_MODELS_DIR": "/nonexistent", "RAY_DEDUP_LOGS": "0"}
    command = [sys.executable, "-m", "jtp_core", "dataset", "caption", str(tmp_path / "ds"), "-o",
               str(tmp_path / "ray"), "--engine", "ray", "--num-cpus", "2", "--wave-units", "1", "--unit-size", "6",
               "--threshold", "0.5", "--model", str(linear_checkpoint), "--device", "cpu", "--offline", "--no-progress"]
    # its own session: killing the group also kills the local Ray instance it started, as a crash would
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if any(p.is_dir() for p in (tmp_path / "ray" / "parts").glob("wave-*")):
                break
            time.sleep(0.05)
        assert process.poll() is None, "the Ray job ended before it could be killed"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done = len(json.loads((tmp_path / "ray" / MANIFEST).read_text())["done"])
    waves = len([p for p in (tmp_path / "ray" / "parts").glob("wave-*") if p.is_dir()])
    assert 0 <= done <= waves < 3 and waves >= 1
    resumed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                             start_new_session=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{waves} done before" in resumed.stdout
    local, ray_rows = comparable(tmp_path / "local"), comparable(tmp_path / "ray")
    assert [r["key"] for r in ray_rows] == [r["key"] for r in local]
    for a, b in zip(local, ray_rows, strict=True):
        assert (a["tags"], a["caption"], a["unit"]) == (b["tags"], b["caption"], b["unit"])
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    assert not list((tmp_path / "ray" / "_staging").iterdir())


def test_full_disk_during_a_ray_wave_keeps_the_waves_before(tmp_path, linear_checkpoint, ray_instance, monkeypatch):
    import errno
    import json

    from jtp_core.datasets import ray_engine
    from jtp_core.datasets.job import MANIFEST, JobError

    write_folder(tmp_path / "ds", 4, sub=False)
    real, calls = ray_engine.fsync_dir, []

    def failing(folder):  # the second wave's staging folder: simulated ENOSPC while it is being committed
        calls.append(folder)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        real(folder)

    monkeypatch.setattr(ray_engine, "fsync_dir", failing)
    two_waves = job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out", unit_size=2)
    with pytest.raises(JobError, match="No space left on device. The 1 units done so far are kept"):
        run_ray(two_waves, progress=False, wave_units=1)
    assert len(json.loads((tmp_path / "out" / MANIFEST).read_text())["done"]) == 1
    monkeypatch.setattr(ray_engine, "fsync_dir", real)
    summary = run_ray(job([tmp_path / "ds"], linear_checkpoint, tmp_path / "out", unit_size=2), progress=False)
    assert (summary.units_skipped, summary.units_done, summary.images) == (1, 1, 2)
    assert len(comparable(tmp_path / "out")) == 4
