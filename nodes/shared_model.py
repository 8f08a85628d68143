"""The one place the pack keeps loaded JTP models, shared by JTP Model Loader and the /jtp/tag route.

Keyed by the loader's inputs (model, device, precision, and whatever the loader adds later), so a right-click
"Tag with JTP" reuses the model a graph already loaded instead of loading a second copy, and both stay
under ComfyUI's memory management through the same ModelPatcher (``JTPModel.ready``).

``RUN_LOCK`` is held around every forward pass of the pack (nodes and route): the route runs in a worker
thread of the web server, ComfyUI's queue in its executor thread, and ``load_models_gpu`` / moving the model
between devices must not happen in both at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from .comfy_host import JTPModel, load_jtp_model

MAX_MODELS = 2  # a graph with two loaders keeps both; older ones are dropped (a graph may still hold them)
RUN_LOCK = threading.RLock()
_CACHE: OrderedDict[tuple, JTPModel] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_last_inputs: dict[str, Any] | None = None


def get_jtp_model(**loader_inputs: Any) -> JTPModel:
    """The model for these loader inputs, loaded on first use (``load_jtp_model(**loader_inputs)``)."""
    global _last_inputs
    key = tuple(sorted(loader_inputs.items()))
    with _CACHE_LOCK:  # two loads of the same model at once would build two copies
        model = _CACHE.get(key)
        if model is None:
            model = _same_weights(loader_inputs) or load_jtp_model(**loader_inputs)
            _CACHE[key] = model
            while len(_CACHE) > MAX_MODELS:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        _last_inputs = dict(loader_inputs)
        return model


def _same_weights(loader_inputs: dict[str, Any]) -> JTPModel | None:
    """A cached model that differs only in sequence_length, sharing its weights: that input only changes the
    preprocessing, and loading again would hold a second copy of ~1 GB of weights (the real ComfyUI kept both)."""
    if "sequence_length" not in loader_inputs:
        return None
    others = {name: value for name, value in loader_inputs.items() if name != "sequence_length"}
    for key, model in reversed(_CACHE.items()):
        if {name: value for name, value in key if name != "sequence_length"} == others:
            return model.with_sequence_length(loader_inputs["sequence_length"])
    return None


def last_loader_inputs() -> dict[str, Any] | None:
    """The inputs of the model loaded or used most recently, if any."""
    return dict(_last_inputs) if _last_inputs is not None else None


def clear() -> None:
    global _last_inputs
    with _CACHE_LOCK:
        _CACHE.clear()
        _last_inputs = None
