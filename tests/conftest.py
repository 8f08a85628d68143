from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from checkpoints import write_checkpoint  # noqa: E402

# Safety net, set before huggingface_hub is imported: a hub request a test did not mean to make goes to a
# closed loopback port instead of the internet. Tests that download start their own loopback hub.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(autouse=True)
def _isolated_models_dir(monkeypatch):
    # never pick up (or download into) the user's real models folder
    monkeypatch.setenv("JTP_MODELS_DIR", "/nonexistent-jtp-models")


@pytest.fixture(scope="session")
def linear_checkpoint(tmp_path_factory) -> Path:
    """A tiny JTP-1 PILOT-layout model folder (linear head, 16 tags)."""
    folder = tmp_path_factory.mktemp("models") / "TINY_PILOT"
    write_checkpoint(folder, "linear", 16)
    return folder


@pytest.fixture(scope="session")
def gated_checkpoint(tmp_path_factory) -> Path:
    """A tiny PILOT2-layout model folder (gated head, 16 tags)."""
    folder = tmp_path_factory.mktemp("models") / "TINY_PILOT2"
    write_checkpoint(folder, "gated", 16)
    return folder


@pytest.fixture(scope="session")
def tiny_tagger(linear_checkpoint):
    from jtp_core import load_tagger

    return load_tagger(linear_checkpoint, device="cpu")


@pytest.fixture
def comfy(tmp_path):
    """A ComfyUI stand-in with an empty models dir; yields (standin, pack module)."""
    from comfy_standin import StandIn, import_pack

    standin = StandIn(tmp_path / "models")
    standin.install()
    try:
        yield standin, import_pack()
    finally:
        standin.uninstall()
