"""JTP Model Loader's shared models: changing only sequence_length reuses the loaded weights."""

from __future__ import annotations

import pytest
import torch
from hydra_checkpoints import write_hydra_checkpoint

from jtp_core import load_tagger


def test_sequence_length_change_shares_the_weights(comfy):
    """The real ComfyUI held a second ~2 GB copy (and took a full reload) when only sequence_length changed."""
    standin, pack = comfy
    folder = standin.models_dir / "jtp" / "TINY_H35"
    write_hydra_checkpoint(folder / "tiny.safetensors", "rr_hydra2", 8, seed=3)
    loader = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]()
    try:
        (coarse,) = loader.load("TINY_H35", "cpu", "fp32", 64)
        (fine,) = loader.load("TINY_H35", "cpu", "fp32", 256)
        assert fine.tagger.model is coarse.tagger.model and fine.patcher is coarse.patcher
        assert (coarse.tagger.preprocessor.max_seq, fine.tagger.preprocessor.max_seq) == (64, 256)
        image = torch.rand(1, 200, 260, 3)  # 12×16 patches: 192 at 256, fewer at 64
        for model, seq in ((coarse, 64), (fine, 256)):
            alone = load_tagger(folder, device="cpu", precision="fp32", sequence_length=seq)
            assert torch.equal(model.tagger.predict_image_tensor(image, None), alone.predict_image_tensor(image, None))
        assert not torch.equal(coarse.tagger.predict_image_tensor(image, None),
                               fine.tagger.predict_image_tensor(image, None))
        (again,) = loader.load("TINY_H35", "cpu", "fp32", 64)
        assert again is coarse
        (other,) = loader.load("TINY_H35", "cpu", "bf16", 64)  # another precision: its own weights
        assert other.tagger.model is not coarse.tagger.model
    finally:
        pack.nodes.shared_model.clear()


def _defaults(node) -> dict:
    return {key: opts["default"] for section in node.INPUT_TYPES().values()
            for key, (_, opts) in section.items() if isinstance(opts, dict) and "default" in opts}


@pytest.mark.parametrize("name", ["JTPTagger", "JTPPromptCheck", "JTPTagHeatmap", "JTPCaptionFolder"])
def test_every_node_that_runs_the_model_waits_for_the_run_lock(comfy, tmp_path, name):
    """The right-click route runs in a web-server thread holding RUN_LOCK; ComfyUI's queue may start a node
    meanwhile (the route only waits for an empty queue before it starts): the node must wait, not move or run
    the shared model at the same time."""
    import threading

    from PIL import Image

    standin, pack = comfy
    write_hydra_checkpoint(standin.models_dir / "jtp" / "TINY_H35" / "tiny.safetensors", "rr_hydra2", 8, seed=3)
    (model,) = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]().load("TINY_H35", "cpu", "fp32", 64)
    node = pack.NODE_CLASS_MAPPINGS[name]
    inputs = {**_defaults(node), "jtp_model": model, "image": torch.rand(1, 40, 56, 3)}
    if name == "JTPCaptionFolder":
        folder = tmp_path / "set"
        folder.mkdir()
        Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "a.png")
        inputs = {**_defaults(node), "jtp_model": model, "folder": str(folder), "mode": "overwrite"}
    done = threading.Event()
    errors = []

    def work():
        try:
            getattr(node(), node.FUNCTION)(**inputs)
        except Exception as error:  # reported below
            errors.append(error)
        done.set()

    lock = pack.nodes.shared_model.RUN_LOCK
    try:
        with lock:
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            assert not done.wait(1.0), f"{name} ran while the route held RUN_LOCK"
        assert done.wait(60) and not errors, errors
    finally:
        pack.nodes.shared_model.clear()
