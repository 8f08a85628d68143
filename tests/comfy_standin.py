"""A minimal stand-in for the parts of ComfyUI the nodes use, and a loader for the pack as ComfyUI does it.

It records what the nodes asked of ComfyUI (progress updates, models loaded) so tests can assert on it.
It is no substitute for a real ComfyUI, only a fast check of the adapters.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "jtp_pack_under_test"


class InterruptProcessingException(Exception):
    pass


class StandIn:
    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.progress: list[tuple[int, int]] = []
        self.loaded: list[object] = []
        self.interrupt_after: int | None = None  # raise Cancel once this many progress updates were seen
        self.folders: dict[str, list[str]] = {}

    def install(self) -> None:
        standin = self
        folder_paths = types.ModuleType("folder_paths")
        folder_paths.models_dir = str(self.models_dir)

        def add_model_folder_path(name, path, is_default=False):
            paths = standin.folders.setdefault(name, [])
            if path not in paths:
                paths.insert(0, path) if is_default else paths.append(path)

        folder_paths.add_model_folder_path = add_model_folder_path
        folder_paths.get_folder_paths = lambda name: list(standin.folders[name])

        comfy = types.ModuleType("comfy")
        model_management = types.ModuleType("comfy.model_management")
        model_management.InterruptProcessingException = InterruptProcessingException
        model_management.get_torch_device = lambda: torch.device("cpu")
        model_management.unet_offload_device = lambda: torch.device("cpu")
        model_management.load_models_gpu = lambda models, **kw: standin.loaded.extend(models)

        def throw_exception_if_processing_interrupted():
            if standin.interrupt_after is not None and len(standin.progress) >= standin.interrupt_after:
                raise InterruptProcessingException()

        model_management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

        model_patcher = types.ModuleType("comfy.model_patcher")

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
                self.model, self.load_device, self.offload_device = model, load_device, offload_device

        model_patcher.ModelPatcher = ModelPatcher

        utils = types.ModuleType("comfy.utils")

        class ProgressBar:
            def __init__(self, total, node_id=None):
                self.total, self.current = total, 0

            def update_absolute(self, value, total=None, preview=None):
                self.total = total if total is not None else self.total
                self.current = min(value, self.total)
                standin.progress.append((self.current, self.total))

            def update(self, value):
                self.update_absolute(self.current + value)

        utils.ProgressBar = ProgressBar
        comfy.model_management, comfy.model_patcher, comfy.utils = model_management, model_patcher, utils
        sys.modules.update({
            "folder_paths": folder_paths,
            "comfy": comfy,
            "comfy.model_management": model_management,
            "comfy.model_patcher": model_patcher,
            "comfy.utils": utils,
        })

    def uninstall(self) -> None:
        for name in ("folder_paths", "comfy", "comfy.model_management", "comfy.model_patcher", "comfy.utils"):
            sys.modules.pop(name, None)
        for name in [name for name in sys.modules if name == PACK_NAME or name.startswith(PACK_NAME + ".")]:
            del sys.modules[name]


def import_pack() -> types.ModuleType:
    """Import the repository root as a package, the way ComfyUI imports custom_nodes/<pack>/__init__.py."""
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module
