"""Resolving models by name or folder, and downloading through huggingface_hub from a loopback hub."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_hub import FakeHub, serve

from jtp_core import KNOWN_MODELS, DownloadError, ModelNotFoundError, resolve_model
from jtp_core.hub.files import available_models, default_models_dir, download_model

ROOT = Path(__file__).resolve().parent.parent
PILOT = KNOWN_MODELS["JTP_PILOT"]
SUBFOLDER = "JTP_PILOT"  # where the official repo keeps PILOT's two files


def _official_layout(folder: Path, write_checkpoint) -> Path:
    """A tiny model under the official file names of JTP_PILOT."""
    write_checkpoint(folder, "linear", 16, weights_name=PILOT.weights_file)
    return folder


@pytest.fixture
def offline_hub(monkeypatch):
    """Any attempt to reach the hub fails the test."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched although the files are present")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)


def test_known_model_present_is_used_without_network(tmp_path, offline_hub):
    from checkpoints import write_checkpoint

    _official_layout(tmp_path / "JTP_PILOT", write_checkpoint)
    files = resolve_model("JTP_PILOT", models_dirs=[tmp_path])
    assert files.weights == tmp_path / "JTP_PILOT" / PILOT.weights_file
    assert files.tags == tmp_path / "JTP_PILOT" / "tags.json"


def test_later_models_dir_is_searched(tmp_path, offline_hub):
    from checkpoints import write_checkpoint

    _official_layout(tmp_path / "extra" / "JTP_PILOT", write_checkpoint)
    files = resolve_model("JTP_PILOT", models_dirs=[tmp_path / "default", tmp_path / "extra"])
    assert files.weights.parent == tmp_path / "extra" / "JTP_PILOT"


def test_folder_and_weights_path_resolve(linear_checkpoint, offline_hub):
    by_folder = resolve_model(linear_checkpoint)
    by_file = resolve_model(by_folder.weights)
    assert by_folder == by_file


def test_missing_model_without_download_says_where_to_put_it(tmp_path, offline_hub):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "JTP_PILOT")):
        resolve_model("JTP_PILOT", models_dirs=[tmp_path], download=False)


def test_unknown_name_lists_choices(tmp_path, linear_checkpoint, offline_hub):
    with pytest.raises(ModelNotFoundError, match="JTP_PILOT, JTP_PILOT2"):
        resolve_model("NOPE", models_dirs=[tmp_path])


def test_folder_without_tags_or_with_two_weights_is_refused(tmp_path, linear_checkpoint, offline_hub):
    (tmp_path / "only_weights").mkdir()
    (tmp_path / "only_weights" / "a.safetensors").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="tags.json"):
        resolve_model(tmp_path / "only_weights")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.safetensors", "b.safetensors", "tags.json"):
        (two / name).write_bytes(b"{}")
    with pytest.raises(ModelNotFoundError, match="several weight files"):
        resolve_model(two)


def test_pickled_weights_are_never_accepted(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not opened")
    (tmp_path / "tags.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        resolve_model(tmp_path / "model.ckpt")


def test_available_models_lists_known_then_local(tmp_path, linear_checkpoint):
    import shutil

    shutil.copytree(linear_checkpoint, tmp_path / "MY_FINETUNE")
    (tmp_path / ".hidden").mkdir()
    assert available_models([tmp_path]) == [*KNOWN_MODELS, "MY_FINETUNE"]


def test_default_models_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("JTP_MODELS_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path
    monkeypatch.delenv("JTP_MODELS_DIR")
    assert default_models_dir().name in ("jtp", "models")


def test_download_puts_files_in_model_folder(tmp_path):
    from checkpoints import write_checkpoint

    source = _official_layout(tmp_path / "source", write_checkpoint)
    hub = FakeHub()
    hub.add_folder(PILOT.repo_id, SUBFOLDER, source)
    with serve(hub):
        files = download_model(PILOT, tmp_path / "models", endpoint=hub.url)
    folder = tmp_path / "models" / "JTP_PILOT"
    assert files.weights == folder / PILOT.weights_file
    assert files.weights.read_bytes() == (source / PILOT.weights_file).read_bytes()
    assert files.tags.read_bytes() == (source / "tags.json").read_bytes()
    assert not (folder / SUBFOLDER).exists()  # the repo's subfolder is flattened away


def test_failed_download_leaves_nothing_that_looks_like_a_model(tmp_path):
    from checkpoints import write_checkpoint

    source = _official_layout(tmp_path / "source", write_checkpoint)
    hub = FakeHub()
    hub.add_folder(PILOT.repo_id, SUBFOLDER, source)
    hub.truncate.add(f"{PILOT.repo_id}/{SUBFOLDER}/{PILOT.weights_file}")
    models = tmp_path / "models"
    with serve(hub):
        with pytest.raises(DownloadError, match="put .* by hand"):
            download_model(PILOT, models, endpoint=hub.url)
        left = [p for p in (models / "JTP_PILOT").rglob("*.safetensors")]
        assert left == [] and not (models / "JTP_PILOT" / SUBFOLDER).exists()
        with pytest.raises(ModelNotFoundError):
            resolve_model("JTP_PILOT", models_dirs=[models], download=False)
        hub.truncate.clear()  # the next try succeeds and leaves a loadable model
        files = download_model(PILOT, models, endpoint=hub.url)
    assert files.weights.read_bytes() == (source / PILOT.weights_file).read_bytes()


def test_cli_downloads_from_hf_endpoint_then_works_offline(tmp_path):
    """The real path end to end: HF_ENDPOINT is honoured, the model is tagged, and with the files present
    a second run with HF_HUB_OFFLINE=1 needs no hub at all."""
    from checkpoints import write_checkpoint
    from PIL import Image

    source = _official_layout(tmp_path / "source", write_checkpoint)
    image = tmp_path / "cat.png"
    Image.new("RGB", (50, 80), (120, 30, 200)).save(image)
    hub = FakeHub()
    hub.add_folder(PILOT.repo_id, SUBFOLDER, source)
    env = {**os.environ, "JTP_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    command = [sys.executable, "-m", "jtp_core", "tag", str(image), "--threshold", "0"]
    with serve(hub):
        first = subprocess.run(command, env={**env, "HF_ENDPOINT": hub.url}, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert any(method == "GET" for method, _ in hub.requests)
    second = subprocess.run(command, env={**env, "HF_HUB_OFFLINE": "1"}, cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and first.stdout.count(", ") == 15  # all 16 tags above 0
