"""JTP tagger core: RedRocket's JTP e621 taggers, independent of any host application.

The few calls every front end uses::

    tagger = load_tagger("JTP_PILOT")                 # resolve, download if missing, load
    probs = tagger.predict_pils(images)               # or predict_image_tensor(IMAGE, MASK)
    results = tag_results(probs, tagger.labels, TagOptions(threshold=0.3))
"""

from .errors import CheckpointError, DownloadError, ImageError, JTPError, ModelNotFoundError
from .families.pilot.preprocess import preprocess_image_tensor, preprocess_pil
from .hub.files import ModelFiles, available_models, default_models_dir, resolve_model
from .hub.known_models import DEFAULT_MODEL, KNOWN_MODELS, ModelSpec
from .inference.tagger import Tagger, load_tagger, load_tagger_from_files
from .tags.postprocess import TagOptions, TagResult, parse_tag_list, tag_result, tag_results
from .tags.tag_table import TagTable, load_tag_table, read_tag_table

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
