"""The pack's HTTP route: POST /jtp/tag tags one image ComfyUI knows, for the right-click "Tag with JTP".

Body (JSON): ``{"filename": "x.png", "subfolder": "", "type": "input" | "output" | "temp",
"model": {<JTP Model Loader inputs>} (optional), "threshold": 0.2 (optional), "calibration": "auto" (optional)}``
— the image as the frontend
knows it (what ``/view`` takes). Reply: ``{"text", "tags": [[tag, score, category], ...], "model"}``, or
``{"error": message}`` with a 4xx/5xx status; a bad request never takes the server down.

The model is the one JTP Model Loader uses for the same inputs (``shared_model``), so nothing is loaded twice.
Without ``model`` it is the model the graph used last, else the default model; a model that is not on disk is
an error (404), never a silent multi-GB download from a right-click.

Not at the same time as the queue: the route waits (up to ``QUEUE_WAIT_S``) until ComfyUI's queue is empty,
then runs in a worker thread (the web server's event loop stays free) holding ``RUN_LOCK``, which the pack's
nodes hold too; model moves go through ``JTPModel.ready`` (ComfyUI's ``load_models_gpu``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..jtp_core import DEFAULT_MODEL, TagOptions, tag_result
from ..jtp_core.errors import ImageError, JTPError, ModelNotFoundError
from ..jtp_core.hub.files import resolve_model
from .comfy_host import model_dirs
from .shared_model import RUN_LOCK, get_jtp_model, last_loader_inputs
from .tag_view import category_lookup, tag_rows

ROUTE = "/jtp/tag"
IMAGE_TYPES = ("input", "output", "temp")
QUEUE_WAIT_S = 60.0
log = logging.getLogger("jtp_tagger")


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def handle_tag_request(raw: bytes, queue_busy=lambda: False, wait_s: float = QUEUE_WAIT_S) -> tuple[int, dict]:
    """Raw request body → (HTTP status, JSON reply). Every failure becomes a JSON error."""
    try:
        body = _parse_body(raw)
        path = image_path(body["filename"], body.get("subfolder", ""), body.get("type", "input"))
        inputs = loader_inputs(body.get("model"))
        options = _options(body)
        await _wait_for_idle_queue(queue_busy, wait_s)
        reply = await asyncio.get_running_loop().run_in_executor(None, tag_file, path, inputs, options)
        return 200, reply
    except RequestError as error:
        return error.status, {"error": str(error)}
    except ModelNotFoundError as error:
        return 404, {"error": f"{error}. Run a JTP Model Loader node once to download it."}
    except (ImageError, JTPError, ValueError) as error:
        return 422, {"error": str(error)}
    except Exception as error:  # the server must stay up; the message goes to the page and the log
        log.exception("JTP: %s failed", ROUTE)
        return 500, {"error": f"{type(error).__name__}: {error}"}


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the body must be JSON: {error}") from error
    if not isinstance(body, dict):
        raise RequestError(400, "the body must be a JSON object with filename, subfolder and type")
    if not isinstance(body.get("filename"), str) or not body["filename"].strip():
        raise RequestError(400, "'filename' (the image's file name, as /view takes it) is missing")
    for key in ("subfolder", "type"):
        if key in body and not isinstance(body[key], str):
            raise RequestError(400, f"'{key}' must be a string")
    return body


def image_path(filename: str, subfolder: str = "", kind: str = "input") -> Path:
    """The file behind {filename, subfolder, type}, checked the way ComfyUI's /view checks it."""
    import folder_paths

    name, annotated_dir = folder_paths.annotated_filepath(filename) if hasattr(folder_paths, "annotated_filepath") \
        else (filename, None)
    if kind not in IMAGE_TYPES and annotated_dir is None:
        raise RequestError(400, f"'type' must be one of {', '.join(IMAGE_TYPES)}; got {kind!r}")
    if os.path.isabs(name) or ".." in Path(name).parts or not name:
        raise RequestError(400, f"bad filename {filename!r}")
    base = Path(annotated_dir or folder_paths.get_directory_by_type(kind)).resolve()
    folder = (base / subfolder).resolve()
    if os.path.commonpath([folder, base]) != str(base):
        raise RequestError(400, f"bad subfolder {subfolder!r}")
    path = folder / os.path.basename(name)
    if not path.is_file():
        raise RequestError(404, f"no image {os.path.join(subfolder, name)!r} in ComfyUI's {kind} folder")
    return path


def loader_inputs(requested: Any) -> dict[str, Any]:
    """JTP Model Loader inputs for the route: the ones asked for (checked against the loader's own choices),
    else those used last, else the loader's defaults."""
    from .model_loader import JTPModelLoader

    types = JTPModelLoader.INPUT_TYPES()
    spec = {**types.get("required", {}), **types.get("optional", {})}  # the same key as the loader node's
    defaults = {name: options.get("default") for name, (_, options) in spec.items()}
    if requested is None:
        return last_loader_inputs() or defaults
    if not isinstance(requested, dict):
        raise RequestError(400, "'model' must be an object of JTP Model Loader inputs, e.g. {\"model\": \"JTP_PILOT\"}")
    inputs = dict(defaults)
    for name, value in requested.items():
        if name not in spec:
            continue  # a newer frontend may send more; the loader decides what it takes
        kind = spec[name][0]
        if isinstance(kind, list) and value not in kind:
            raise RequestError(400, f"model.{name}: {value!r} is not one of {', '.join(map(str, kind))}")
        inputs[name] = value
    return inputs


def _options(body: dict[str, Any]) -> TagOptions:
    """A fixed ``threshold`` when one is sent (calibration off unless asked for); else each model's default:
    calibrated per-tag thresholds for JTP-3 / Hydra, 0.2 for JTP-1."""
    value = body.get("threshold")
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1):
        raise RequestError(400, f"'threshold' must be a number from 0 to 1; got {value!r}")
    calibration = body.get("calibration", "auto" if value is None else "off")
    try:
        return TagOptions(threshold=TagOptions().threshold if value is None else float(value), calibration=calibration)
    except ValueError as error:
        raise RequestError(400, f"'calibration': {error}") from None


async def _wait_for_idle_queue(queue_busy, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while queue_busy():
        if loop.time() >= deadline:
            raise RequestError(409, "ComfyUI is still running the queue; try again when it is empty")
        await asyncio.sleep(0.25)


def tag_file(path: Path, inputs: dict[str, Any], options: TagOptions) -> dict[str, Any]:
    """Tag one image file with the shared model (runs in a worker thread)."""
    name = inputs.get("model", DEFAULT_MODEL)
    resolve_model(name, model_dirs(), download=False)  # not on disk: ModelNotFoundError, before any loading
    image, mask = load_image(path)
    with RUN_LOCK, torch.inference_mode():
        jtp_model = get_jtp_model(**inputs)
        tagger = jtp_model.ready()
        probs = tagger.predict_image_tensor(image, mask)
    try:
        result = tag_result(probs[0], tagger.labels, options)
    except ValueError as error:  # e.g. a calibration metric asked of a model without validation data
        raise RequestError(400, str(error)) from None
    return {
        "text": result.text,
        "tags": tag_rows(result.scores, category_lookup(tagger, None)),
        "model": name,
        "image": path.name,
    }


def load_image(path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An image file → IMAGE [1,H,W,3] and MASK [1,H,W] (1 - alpha) as LoadImage makes them (EXIF turned)."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"cannot read image {path.name}: {error}") from error
    has_alpha = "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)
    rgba = image.convert("RGBA") if has_alpha else image.convert("RGB")
    array = torch.from_numpy(np.asarray(rgba, dtype=np.float32) / 255.0)
    mask = (1.0 - array[..., 3])[None] if has_alpha else None
    return array[..., :3][None].contiguous(), mask


def register(server: Any = None) -> bool:
    """Add the route to ComfyUI's web server; False when there is none (tests, the SD WebUI)."""
    if server is None:
        try:
            from server import PromptServer
        except ImportError:
            return False
        server = getattr(PromptServer, "instance", None)
        if server is None:
            return False
    from aiohttp import web

    def queue_busy() -> bool:
        queue = getattr(server, "prompt_queue", None)
        return bool(queue is not None and queue.get_tasks_remaining() > 0)

    @server.routes.post(ROUTE)
    async def jtp_tag(request: web.Request) -> web.Response:
        status, reply = await handle_tag_request(await request.read(), queue_busy)
        return web.json_response(reply, status=status)

    return True
