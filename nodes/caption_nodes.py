"""Folder captioning nodes: JTP Caption Folder, JTP Load Images From Folder, JTP Save Captions."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..jtp_core import ImageError, JTPError, parse_tag_list
from ..jtp_core.captioning.caption import CaptionRequest, plan_captions, run_plan, save_captions, tagger_identity
from ..jtp_core.captioning.caption_files import MODES
from ..jtp_core.families.pilot.architecture import INPUT_SIZE
from ..jtp_core.families.pilot.fast_jpeg import load_for_model
from ..jtp_core.inference.images import IMAGE_EXTENSIONS, iter_image_files
from .comfy_host import JTPModel, progress_reporter
from .inputs import CATEGORY, batch_size_input, calibration_input, format_inputs, jtp_model_input, tag_options_input
from .inputs import tag_options as _tag_options
from .shared_model import RUN_LOCK

log = logging.getLogger(__name__)
_DEFAULT_EXTENSIONS = ", ".join(IMAGE_EXTENSIONS)

_MODE_TOOLTIP = (
    "When a caption file already exists: skip it (default), overwrite it, or add only the tags it lacks after "
    "(append) or before (prepend) its text. Trigger words go first in every mode. In every mode, queueing a "
    "cancelled run again with the same settings resumes it where it stopped."
)


def _folder_input(tooltip: str) -> tuple[str, dict]:
    return ("STRING", {"default": "", "tooltip": tooltip})


def _recursive_input() -> tuple[str, dict]:
    return ("BOOLEAN", {"default": False, "tooltip": "Also look into subfolders (hidden ones are skipped)."})


def _extensions_input() -> tuple[str, dict]:
    return ("STRING", {
        "default": _DEFAULT_EXTENSIONS,
        "tooltip": "Which files are images, by extension (comma-separated).",
    })


def _output_folder_input() -> tuple[str, dict]:
    return ("STRING", {
        "default": "",
        "tooltip": "Empty: each caption beside its image. Otherwise captions go here, in the same subfolders "
                   "as the images.",
    })


def _caption_extension_input() -> tuple[str, dict]:
    return ("STRING", {"default": ".txt", "tooltip": "Caption file extension: foo.png → foo.txt."})


def _fast_jpeg_input(note: str = "") -> tuple[str, dict]:
    return ("BOOLEAN", {
        "default": False,
        "tooltip": "Trades exactness for speed: decodes JPEGs at a reduced scale (never below the size the "
                   "model needs), several times faster, but scores differ slightly from the reference. Off = exact."
                   + (f" {note}" if note else ""),
    })


def _resolve_folder(text: str) -> Path:
    """An absolute folder, or one relative to ComfyUI's input folder."""
    text = text.strip().strip('"')
    if not text:
        raise JTPError("choose a folder: the folder input is empty")
    path = Path(text).expanduser()
    if not path.is_absolute():
        import folder_paths

        path = Path(folder_paths.get_input_directory()) / path
    return path


def _extensions(text: str) -> tuple[str, ...]:
    return tuple(ext.strip() for ext in text.split(",") if ext.strip())


def _never_cached(cls, **_inputs) -> float:
    return float("nan")  # NaN equals nothing, so ComfyUI runs the node every time instead of reusing its result


class JTPCaptionFolder:
    DESCRIPTION = ("Writes a caption file beside every image of a folder (foo.png → foo.txt) for LoRA training. "
                   "Streams the folder in batches; Cancel stops between batches and keeps what was written.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("summary",)
    OUTPUT_TOOLTIPS = ("What was captioned, skipped and failed (with reasons), and how fast.",)
    OUTPUT_NODE = True  # its work is the files it writes; it runs without anything connected
    FUNCTION = "caption"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "jtp_model": jtp_model_input(),
                "folder": _folder_input("Folder of images to caption (absolute, or relative to ComfyUI's input "
                                        "folder)."),
                "recursive": _recursive_input(),
                "mode": (list(MODES), {"default": "skip", "tooltip": _MODE_TOOLTIP}),
                **format_inputs(),
                "batch_size": batch_size_input(),
            },
            "optional": {
                "output_folder": _output_folder_input(),
                "extensions": _extensions_input(),
                "caption_extension": _caption_extension_input(),
                "sidecar_floor": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 0.99, "step": 0.01,
                    "tooltip": "Above 0: also write foo.jtp.json with every tag scoring above this, to "
                               "re-threshold later without running the model again. 0 = no such file.",
                }),
                "tag_options": tag_options_input(),
                "fast_jpeg": _fast_jpeg_input(),
                "calibration": calibration_input(),
            },
        }

    IS_CHANGED = classmethod(_never_cached)  # the folder's content can change between runs

    def caption(
        self,
        jtp_model: JTPModel,
        folder: str,
        recursive: bool,
        mode: str,
        batch_size: int,
        output_folder: str = "",
        extensions: str = _DEFAULT_EXTENSIONS,
        caption_extension: str = ".txt",
        sidecar_floor: float = 0.0,
        tag_options: dict | None = None,
        fast_jpeg: bool = False,
        **widgets,
    ):
        request = CaptionRequest(
            inputs=[_resolve_folder(folder)],
            recursive=recursive,
            extensions=_extensions(extensions),
            output_dir=_resolve_folder(output_folder) if output_folder.strip() else None,
            mode=mode,
            options=_tag_options(tag_options, **widgets),
            caption_extension=caption_extension,
            sidecar_floor=sidecar_floor or None,
            batch_size=batch_size or None,
            fast_jpeg=fast_jpeg,
            model_id=tagger_identity(jtp_model.tagger),  # the job record's model (a rerun resumes the same job)
        )
        if not request.inputs[0].is_dir():
            raise JTPError(f"not a folder: {request.inputs[0]}")
        plan = plan_captions(request)  # checks the output folders before the model goes onto the GPU
        for note in plan.notes:
            log.info("JTP Caption Folder: %s", note)
        with RUN_LOCK:  # not at the same time as a right-click "Tag with JTP" (see shared_model.py)
            # an already captioned folder does not make ComfyUI load the model onto the GPU
            tagger = jtp_model.ready() if plan.jobs else None
            summary = run_plan(tagger, request, plan, on_progress=progress_reporter(len(plan.jobs)))
        text = "\n".join([*plan.notes, summary.to_text()])
        return {"ui": {"text": [text]}, "result": (text,)}


class JTPLoadImagesFromFolder:
    DESCRIPTION = ("Loads the images of a folder as a list (each keeps its own size) with their paths, e.g. for "
                   "JTP Tagger → JTP Save Captions. For big folders, JTP Caption Folder streams instead.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("images", "masks", "paths")
    OUTPUT_IS_LIST = (True, True, True)
    OUTPUT_TOOLTIPS = (
        "One IMAGE per file (a list: images of different sizes cannot share a batch).",
        "Transparency of each image as a MASK (1 = transparent), as LoadImage gives it.",
        "The file path of each image, in the same order.",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": _folder_input("Folder to load images from (absolute, or relative to ComfyUI's input "
                                        "folder)."),
                "recursive": _recursive_input(),
                "start": ("INT", {"default": 0, "min": 0, "max": 10**9,
                                  "tooltip": "Skip this many images first (in sorted order)."}),
                "limit": ("INT", {"default": 0, "min": 0, "max": 10**6,
                                  "tooltip": "Load at most this many images; 0 = all. All are held in memory."}),
            },
            "optional": {
                "extensions": _extensions_input(),
                "fast_jpeg": _fast_jpeg_input(
                    "This loader does not know the model: it fits JPEGs for JTP-1 (384 px). For JTP-3 / Hydra "
                    "leave it off, or use JTP Caption Folder's, which fits them for the model it is given."
                ),
            },
        }

    @classmethod
    def IS_CHANGED(cls, folder, recursive, start, limit, extensions=_DEFAULT_EXTENSIONS, fast_jpeg=False):
        # rerun when a file is added, removed or changed; reuse the cached images otherwise
        digest = hashlib.sha256()
        try:
            for path in _list(folder, recursive, extensions):
                stat = path.stat()
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except (JTPError, OSError):
            return float("nan")  # let the run itself report the problem
        return f"{digest.hexdigest()}:{start}:{limit}:{fast_jpeg}"

    def load(self, folder: str, recursive: bool, start: int, limit: int, extensions: str = _DEFAULT_EXTENSIONS,
             fast_jpeg: bool = False):
        paths = _list(folder, recursive, extensions)[start:]
        images, masks, names = [], [], []
        for path in paths:
            if limit and len(names) >= limit:
                break
            try:
                # fast_jpeg: a JPEG comes already fitted for the model, as JTP Caption Folder sees it
                image, mask = _to_image_and_mask(load_for_model(path, INPUT_SIZE, fast_jpeg))
            except (ImageError, OSError, ValueError) as error:
                log.warning("JTP Load Images From Folder: skipped %s", error)  # the error names the file
                continue
            images.append(image)
            masks.append(mask)
            names.append(str(path))
        if not names:
            raise JTPError(f"no readable images in {_resolve_folder(folder)}")
        return (images, masks, names)


class JTPSaveCaptions:
    DESCRIPTION = ("Writes each caption as the caption file of the image at the same position of 'paths' "
                   "(foo.png → foo.txt), atomically, with the same modes as JTP Caption Folder.")
    CATEGORY = CATEGORY
    INPUT_IS_LIST = True  # all paths and captions at once, so they are matched one to one
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("summary",)
    OUTPUT_TOOLTIPS = ("What was written, skipped and failed.",)
    OUTPUT_NODE = True
    FUNCTION = "save"
    IS_CHANGED = classmethod(_never_cached)  # the caption files may have changed or been deleted since

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "paths": ("STRING", {"forceInput": True, "tooltip": "Image paths, e.g. from JTP Load Images From "
                                                                    "Folder."}),
                "captions": ("STRING", {"forceInput": True, "tooltip": "One caption per path, e.g. JTP Tagger's "
                                                                       "tags."}),
                "mode": (list(MODES), {"default": "skip", "tooltip": _MODE_TOOLTIP}),
            },
            "optional": {
                "output_folder": _output_folder_input(),
                "caption_extension": _caption_extension_input(),
                "separator": ("STRING", {
                    "default": ", ",
                    "tooltip": "How the captions separate tags; used to merge in append and prepend modes.",
                }),
                "trigger_words": ("STRING", {
                    "default": "",
                    "tooltip": "Words put first in every caption, also before an existing caption's text in "
                               "append and prepend modes (e.g. the trigger words given to JTP Tagger).",
                }),
            },
        }

    def save(self, paths: list[str], captions: list[str], mode: list[str], output_folder: list[str] | None = None,
             caption_extension: list[str] | None = None, separator: list[str] | None = None,
             trigger_words: list[str] | None = None):
        if len(paths) != len(captions):
            raise JTPError(f"got {len(paths)} paths but {len(captions)} captions; they must pair up one to one")
        output = _first(output_folder, "").strip()
        summary = save_captions(
            [(Path(path), caption) for path, caption in zip(paths, captions, strict=True)],
            mode=_first(mode, "skip"),
            output_dir=_resolve_folder(output) if output else None,
            caption_extension=_first(caption_extension, ".txt"),
            separator=_first(separator, ", "),
            trigger_words=parse_tag_list(_first(trigger_words, "")),
        )
        text = summary.to_text()
        return {"ui": {"text": [text]}, "result": (text,)}


def _first(values: list | None, default):
    """INPUT_IS_LIST wraps widget values in lists too."""
    return values[0] if values else default


def _list(folder: str, recursive: bool, extensions: str) -> list[Path]:
    root = _resolve_folder(folder)
    if not root.is_dir():
        raise JTPError(f"not a folder: {root}")
    return list(iter_image_files([root], recursive=recursive, extensions=_extensions(extensions)))


def _to_image_and_mask(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL → IMAGE [1,H,W,3] and MASK (1 − alpha) as LoadImage makes them, minus its EXIF rotation: the JTP
    reference does not rotate, so captions match JTP Caption Folder's."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    pixels = torch.from_numpy(rgba[..., :3].copy()).unsqueeze(0)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        mask = 1.0 - torch.from_numpy(rgba[..., 3].copy()).unsqueeze(0)
    else:
        mask = torch.zeros(1, 64, 64)  # what LoadImage gives for opaque images
    return pixels, mask
