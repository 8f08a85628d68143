"""ComfyUI node classes; each module is a thin adapter over jtp_core."""

from .model_loader import JTPModelLoader
from .tagger import JTPTagger

NODE_CLASS_MAPPINGS = {
    "JTPModelLoader": JTPModelLoader,
    "JTPTagger": JTPTagger,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "JTPModelLoader": "JTP Model Loader",
    "JTPTagger": "JTP Tagger",
}
