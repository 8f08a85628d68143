"""ComfyUI node classes; each module is a thin adapter over jtp_core."""

from .caption_nodes import JTPCaptionFolder, JTPLoadImagesFromFolder, JTPSaveCaptions
from .heatmap_node import JTPTagHeatmap
from .model_loader import JTPModelLoader
from .prompt_check import JTPPromptCheck
from .tag_options_node import JTPTagOptions
from .tagger import JTPTagger

NODE_CLASS_MAPPINGS = {
    "JTPModelLoader": JTPModelLoader,
    "JTPTagger": JTPTagger,
    "JTPTagHeatmap": JTPTagHeatmap,
    "JTPTagOptions": JTPTagOptions,
    "JTPCaptionFolder": JTPCaptionFolder,
    "JTPLoadImagesFromFolder": JTPLoadImagesFromFolder,
    "JTPSaveCaptions": JTPSaveCaptions,
    "JTPPromptCheck": JTPPromptCheck,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "JTPModelLoader": "JTP Model Loader",
    "JTPTagger": "JTP Tagger",
    "JTPTagHeatmap": "JTP Tag Heatmap",
    "JTPTagOptions": "JTP Tag Options",
    "JTPCaptionFolder": "JTP Caption Folder",
    "JTPLoadImagesFromFolder": "JTP Load Images From Folder",
    "JTPSaveCaptions": "JTP Save Captions",
    "JTPPromptCheck": "JTP Prompt Check",
}
