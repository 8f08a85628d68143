"""JTP Model Loader's shared models: changing only sequence_length reuses the loaded weights."""

from __future__ import annotations

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
