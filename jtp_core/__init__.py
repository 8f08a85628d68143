"""JTP tagger core: RedRocket's JTP e621 taggers, independent of any host application.

The few calls every front end uses::

    tagger = load_tagger("JTP_PILOT")                 # resolve, download if missing, load
    probs = tagger.predict_pils(images)               # or predict_image_tensor(IMAGE, MASK)
    results = tag_results(probs, tagger.labels, TagOptions(threshold=0.3))

The names below are imported on first use (PEP 562), so ``python -m jtp_core -h`` and the host applications'
start-up do not pay for importing torch until something is tagged.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, DownloadError, ImageError, JTPError, ModelNotFoundError

# public name → module (relative to this package) that defines it
_LAZY = {
    "preprocess_image_tensor": ".families.pilot.preprocess",
    "preprocess_pil": ".families.pilot.preprocess",
    "ModelFiles": ".hub.files",
    "available_models": ".hub.files",
    "default_models_dir": ".hub.files",
    "resolve_model": ".hub.files",
    "DEFAULT_MODEL": ".hub.known_models",
    "KNOWN_MODELS": ".hub.known_models",
    "ModelSpec": ".hub.known_models",
    "Tagger": ".inference.tagger",
    "load_tagger": ".inference.tagger",
    "load_tagger_from_files": ".inference.tagger",
    "TagOptions": ".tags.postprocess",
    "TagResult": ".tags.postprocess",
    "parse_tag_list": ".tags.postprocess",
    "tag_result": ".tags.postprocess",
    "tag_results": ".tags.postprocess",
    "TagTable": ".tags.tag_table",
    "load_tag_table": ".tags.tag_table",
    "read_tag_table": ".tags.tag_table",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .families.pilot.preprocess import preprocess_image_tensor, preprocess_pil
    from .hub.files import ModelFiles, available_models, default_models_dir, resolve_model
    from .hub.known_models import DEFAULT_MODEL, KNOWN_MODELS, ModelSpec
    from .inference.tagger import Tagger, load_tagger, load_tagger_from_files
    from .tags.postprocess import TagOptions, TagResult, parse_tag_list, tag_result, tag_results
    from .tags.tag_table import TagTable, load_tag_table, read_tag_table


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "CheckpointError",
    "DownloadError",
    "ImageError",
    "JTPError",
    "ModelFiles",
    "ModelNotFoundError",
    "ModelSpec",
    "TagOptions",
    "TagResult",
    "TagTable",
    "Tagger",
    "available_models",
    "default_models_dir",
    "load_tag_table",
    "load_tagger",
    "load_tagger_from_files",
    "parse_tag_list",
    "preprocess_image_tensor",
    "preprocess_pil",
    "read_tag_table",
    "resolve_model",
    "tag_result",
    "tag_results",
]
