"""The ComfyUI side of the pack: model folders, memory management, progress and Cancel.

ComfyUI modules are imported inside functions, so the node classes can be imported (and tested) with a
stand-in for ComfyUI.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..jtp_core import Tagger, load_tagger
from ..jtp_core.families.hydra.resize import check_max_seq
from ..jtp_core.inference.devices import pick_device

FOLDER_NAME = "jtp"


def model_dirs() -> list[Path]:
    """The ``jtp`` model folders; the first is where downloads go.

    ``models/jtp`` joins any ``jtp:`` entries of extra_model_paths.yaml, which stay first. Registered on
    first use rather than at import, so importing the pack has no side effects.
    """
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER_NAME)
    folder_paths.add_model_folder_path(FOLDER_NAME, default)  # no-op when already registered
    return [Path(path) for path in folder_paths.get_folder_paths(FOLDER_NAME)]


@dataclass
class JTPModel:
    """What flows along a ``JTP_MODEL`` wire: the tagger, under ComfyUI's memory management."""

    tagger: Tagger
    patcher: Any  # comfy.model_patcher.ModelPatcher; None for an int8 model, which stays on the CPU

    def with_sequence_length(self, sequence_length: int | None) -> JTPModel:
        """The same weights and patcher, preprocessing for another sequence length (a NaFlex setting only)."""
        preprocessor = self.tagger.preprocessor
        if sequence_length and getattr(preprocessor, "max_seq", sequence_length) != sequence_length:
            preprocessor = copy.copy(preprocessor)
            preprocessor.max_seq = check_max_seq(sequence_length)
        return JTPModel(tagger=dataclasses.replace(self.tagger, preprocessor=preprocessor), patcher=self.patcher)

    def ready(self) -> Tagger:
        """Put the model on its device (ComfyUI may have offloaded it to make room) and return the tagger."""
        import comfy.model_management

        if self.patcher is not None:
            comfy.model_management.load_models_gpu([self.patcher])
        return self.tagger


def load_jtp_model(model: str, device: str, precision: str, sequence_length: int | None = None) -> JTPModel:
    import comfy.model_management
    import comfy.model_patcher

    if device == "auto":
        load_device = comfy.model_management.get_torch_device()
        offload_device = comfy.model_management.unet_offload_device()
    else:
        load_device = offload_device = pick_device(device)
    if precision == "int8":
        # quantized modules hold packed weights that ComfyUI can neither move nor measure: keep it out of
        # its memory management, on the CPU where int8 runs
        if device not in ("auto", "cpu"):
            raise ValueError(f"precision 'int8' runs on the CPU only; choose device cpu or auto, not {device}")
        tagger = load_tagger(
            model, device="cpu", precision="int8", models_dirs=model_dirs(), sequence_length=sequence_length
        )
        return JTPModel(tagger=tagger, patcher=None)
    # load onto the offload device in the precision for the load device; ComfyUI moves it there when it is used
    tagger = load_tagger(
        model, device=offload_device, precision=precision, models_dirs=model_dirs(), runs_on=load_device,
        sequence_length=sequence_length,
    )
    patcher = comfy.model_patcher.ModelPatcher(tagger.model, load_device=load_device, offload_device=offload_device)
    return JTPModel(tagger=tagger, patcher=patcher)


def progress_reporter(total: int):
    """A core progress callback that moves ComfyUI's progress bar and honours Cancel between chunks."""
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def on_progress(done: int, _total: int) -> None:
        bar.update_absolute(done, total)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return on_progress
