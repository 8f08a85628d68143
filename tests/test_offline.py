"""Offline or unreachable hub: one clear "put … in … by hand" message, at once, and nothing left behind
(issue #14, item 13). The network is the loopback stand-in hub or a closed loopback port; nothing leaves the host."""

from __future__ import annotations

import socket
import time

import pytest
from fake_hub import FakeHub, serve

from jtp_core import KNOWN_MODELS, DownloadError, ModelNotFoundError, resolve_model
from jtp_core.hub.files import download_model, resolve_tag_table
from jtp_core.hub.known_models import KNOWN_TAG_TABLES

PILOT = KNOWN_MODELS["JTP_PILOT"]


def _closed_port() -> str:
    with socket.socket() as probe:  # bind, read the port, close: nothing listens there afterwards
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _check_by_hand_message(text: str, folder) -> None:
    assert "by hand" in text and str(folder) in text and PILOT.weights_file in text
    assert ".." not in text.replace(str(folder), "")


def test_unreachable_hub_fails_fast_with_the_by_hand_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", _closed_port())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.perf_counter()
    with pytest.raises(DownloadError) as caught:
        resolve_model("JTP_PILOT", models_dirs=[tmp_path / "models"])
    elapsed = time.perf_counter() - started
    assert elapsed < 4, f"took {elapsed:.1f} s: the hub library's retries were not skipped"
    _check_by_hand_message(str(caught.value), tmp_path / "models" / "JTP_PILOT")
    assert "cannot reach the hub" in str(caught.value)
    assert not (tmp_path / "models" / "JTP_PILOT").exists()  # no empty folder, .cache or .lock


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_hf_hub_offline_gives_the_same_message_as_offline_flag(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("JTP_PILOT", models_dirs=[tmp_path / "models"])
    _check_by_hand_message(str(caught.value), tmp_path / "models" / "JTP_PILOT")
    assert "HF_HUB_OFFLINE" in str(caught.value)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE is set.*by hand"):
        download_model(PILOT, tmp_path / "models")
    assert not (tmp_path / "models").exists()
    with pytest.raises(Exception, match="HF_HUB_OFFLINE is set"):
        resolve_tag_table(next(iter(KNOWN_TAG_TABLES)), models_dirs=[tmp_path / "models"])


def test_offline_flag_message_is_unchanged(tmp_path):
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("JTP_PILOT", models_dirs=[tmp_path / "models"], download=False)
    _check_by_hand_message(str(caught.value), tmp_path / "models" / "JTP_PILOT")
    assert "HF_HUB_OFFLINE" not in str(caught.value)


def test_failed_download_leaves_no_cache_or_lock_and_one_period(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    models = tmp_path / "models"
    # reachable, but the files are not there (404)
    with serve(FakeHub()) as hub, pytest.raises(DownloadError) as caught:
        download_model(PILOT, models, endpoint=hub.url)
    _check_by_hand_message(str(caught.value), models / "JTP_PILOT")
    left = sorted(str(path.relative_to(models)) for path in models.rglob("*")) if models.exists() else []
    assert left == [], left  # nothing at all: no empty folder, .cache or .lock


def test_cli_with_unreachable_hub_reports_one_clear_line_quickly(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    env = {**os.environ, "JTP_MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": _closed_port()}
    env.pop("HF_HUB_OFFLINE", None)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "jtp_core", "tag", str(image)], env=env, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    elapsed = time.perf_counter() - started
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and "by hand" in run.stderr, run.stderr
    assert elapsed < 15, f"{elapsed:.1f} s to the error"  # was ~25-30 s of hub retries
    assert not (tmp_path / "models").exists()
