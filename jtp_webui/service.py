"""One loaded tagger for the whole WebUI, and the requests that use it.

The tab and the API share a ``TaggerService``: it keeps at most one model in memory, keyed by (model, device,
precision), so changing the model or a setting swaps it instead of stacking a second 1.75 GB model beside the
first. Model runs hold the host's GPU lock (the WebUI's queue lock), so tagging waits for an image generation
instead of competing with it for VRAM. Unloading never waits: a run in progress keeps its own reference.

API requests are checked here, without FastAPI, and every way a client can get a request wrong becomes a
``RequestError`` with an HTTP 4xx status and a message meant for that client.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, UnidentifiedImageError

from jtp_core import DEFAULT_MODEL, JTPError, Tagger, TagOptions, TagResult, load_tagger, tag_results
from jtp_core.errors import DownloadError, ImageError, ModelNotFoundError
from jtp_core.hub.files import available_models, list_local_models
from jtp_core.tags.postprocess import ORDERS, check_calibration, parse_tag_list
from jtp_core.tags.tag_knowledge import ALL_IMPLICATIONS

if TYPE_CHECKING:
    from jtp_core.captioning.caption import CaptionRequest, CaptionSummary

ProgressCallback = Callable[[int, int], None]
Loader = Callable[..., Tagger]


@dataclass(frozen=True)
class ServiceConfig:
    """What the host's settings say, read afresh for every use so a changed setting applies at once."""

    models_dirs: tuple[Path, ...]  # the first is where downloads go
    default_model: str = DEFAULT_MODEL
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # None = the device's default
    sequence_length: int | None = None  # JTP-3 / Hydra: patches per image (None = the model's default, 1024)
    download: bool = True  # fetch a known model that is not on disk yet
    keep_loaded: bool = True  # False: free the model after every use
    options: TagOptions = field(default_factory=TagOptions)  # post-processing defaults


class RequestError(Exception):
    """A request the client got wrong (4xx) or that the server could not serve; ``message`` is for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class TaggerService:
    def __init__(
        self,
        config: Callable[[], ServiceConfig],
        run_lock: contextlib.AbstractContextManager | None = None,
        loader: Loader = load_tagger,
    ) -> None:
        self._config = config
        self._run_lock = run_lock if run_lock is not None else threading.Lock()
        self._slot_lock = threading.Lock()  # guards the two fields below only; never held during a model run
        self._key: tuple[str, str, str, int | None] | None = None
        self._tagger: Tagger | None = None
        self._loader = loader

    @property
    def config(self) -> ServiceConfig:
        return self._config()

    # models ----------------------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Known models (downloadable) and model folders found in the models dirs."""
        return available_models(list(self.config.models_dirs))

    def models(self) -> dict[str, Any]:
        config = self.config
        local = list_local_models(list(config.models_dirs))
        return {
            "models": [{"name": name, "downloaded": name in local} for name in self.model_names()],
            "default": config.default_model,
            "loaded": self.loaded(),
            "models_dir": str(config.models_dirs[0]),
        }

    def loaded(self) -> dict[str, str] | None:
        key = self._key
        return None if key is None else {"model": key[0], "device": key[1], "precision": key[2]}

    def tagger(self, model: str | None = None) -> Tagger:
        """The loaded tagger for ``model`` (the default model when None), loading it if needed.

        Only names the models list shows are accepted, so an API client cannot point the server at an
        arbitrary path. A different model or device replaces the one in memory.
        """
        config = self.config
        name = model or config.default_model
        names = self.model_names()
        if name not in names:
            raise ModelNotFoundError(f"unknown model {name!r}; choose one of: {', '.join(names)}")
        key = (name, config.device, config.precision, config.sequence_length)
        with self._slot_lock:
            if self._key == key and self._tagger is not None:
                return self._tagger
        self.unload()  # free the old model before loading the new one: both may not fit
        tagger = self._loader(
            name,
            device=config.device,
            precision=config.precision,
            sequence_length=config.sequence_length,
            models_dirs=list(config.models_dirs),
            download=config.download,
        )
        with self._slot_lock:
            self._drop()
            self._key, self._tagger = key, tagger
        return tagger

    def unload(self) -> bool:
        """Free the loaded model; True when there was one."""
        with self._slot_lock:
            had = self._tagger is not None
            self._drop()
        if had:
            _empty_gpu_cache()
        return had

    def _drop(self) -> None:
        self._key, self._tagger = None, None

    # work ------------------------------------------------------------------------------------------------

    def tag_images(
        self,
        images: Sequence[Image.Image],
        model: str | None = None,
        options: TagOptions | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[str, list[TagResult]]:
        """PIL images → (model name, one TagResult per image)."""
        config = self.config
        options = options or config.options
        with self._using_model():
            tagger = self.tagger(model)
            probs = tagger.predict_pils(
                images, batch_size=config.batch_size, on_progress=on_progress, total=len(images)
            )
        return tagger.name, tag_results(probs, tagger.labels, options)

    def caption(
        self, request: CaptionRequest, model: str | None = None, on_progress: ProgressCallback | None = None
    ) -> CaptionSummary:
        """Run the folder captioning pipeline (a ``jtp_core.captioning.caption.CaptionRequest``) with the shared model.

        A folder where every image is already captioned loads no model.
        """
        from jtp_core.captioning.caption import plan_captions, run_plan  # deferred: only the batch section needs it

        if request.batch_size is None and self.config.batch_size:
            request = dataclasses.replace(request, batch_size=self.config.batch_size)
        plan = plan_captions(request)
        with self._using_model():
            tagger = self.tagger(model) if plan.jobs else None
            return run_plan(tagger, request, plan, on_progress)

    @contextlib.contextmanager
    def _using_model(self):
        with self._run_lock:
            try:
                yield
            finally:
                if not self.config.keep_loaded:
                    self.unload()

    # API requests ------------------------------------------------------------------------------------------

    def handle_tag(self, body: Any) -> dict[str, Any]:
        """``POST /tag`` body → response; RequestError for anything the client must change."""
        images, model, options = parse_tag_request(body, self.config.options)
        with client_errors():
            name, results = self.tag_images(images, model=model, options=options)
        return {"model": name, "results": [{"tags": result.text, "scores": result.scores} for result in results]}

    def handle_unload(self) -> dict[str, Any]:
        return {"unloaded": self.unload()}


# request checking --------------------------------------------------------------------------------------------

REQUEST_FIELDS = ("image", "images", "model")


def parse_tag_request(body: Any, defaults: TagOptions) -> tuple[list[Image.Image], str | None, TagOptions]:
    """A ``POST /tag`` JSON body → (decoded images, model name or None, post-processing options).

    Body: ``{"image": b64}`` or ``{"images": [b64, ...]}``, optional ``"model"``, and any TagOptions field
    (``threshold``, ``max_tags``, ``exclude``, ``trigger_words``, ``replace_underscores``,
    ``escape_parentheses``, ``weighted``, ``order``, ``separator``); unset options take the settings' values.
    """
    if not isinstance(body, dict):
        raise RequestError(400, 'the body must be a JSON object, e.g. {"image": "<base64>"}')
    unknown = sorted(set(body) - set(REQUEST_FIELDS) - set(OPTION_FIELDS))
    if unknown:
        allowed = ", ".join(REQUEST_FIELDS + OPTION_FIELDS)
        raise RequestError(400, f"unknown field(s): {', '.join(unknown)}; allowed: {allowed}")
    encoded = _image_fields(body)
    images = [decode_image(value, f"images[{index}]" if "images" in body else "image") for index, value in
              enumerate(encoded)]
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise RequestError(400, "model must be a model name (see GET /jtp/v1/models)")
    overrides = {name: _option_value(name, body[name]) for name in OPTION_FIELDS if name in body}
    try:
        options = dataclasses.replace(defaults, **overrides)
    except ValueError as error:
        raise RequestError(400, str(error)) from None
    return images, (model.strip() if model else None), options


def _image_fields(body: dict[str, Any]) -> list[Any]:
    if ("image" in body) == ("images" in body):
        raise RequestError(400, 'give exactly one of "image" (a base64 string) or "images" (a list of them)')
    if "image" in body:
        return [body["image"]]
    images = body["images"]
    if not isinstance(images, list) or not images:
        raise RequestError(400, '"images" must be a non-empty list of base64 strings')
    return images


def decode_image(value: Any, where: str = "image") -> Image.Image:
    """Base64 (standard or URL-safe, padding optional, a ``data:...;base64,`` prefix allowed) → decoded image."""
    if not isinstance(value, str) or not value.strip():
        raise RequestError(400, f"{where} must be a base64-encoded image file (a non-empty string)")
    text = value.strip()
    if text.startswith("data:"):
        head, comma, text = text.partition(",")
        if not comma or not head.endswith(";base64"):
            raise RequestError(400, f"{where}: a data URL must be base64, like data:image/png;base64,...")
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where} is not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image
    except UnidentifiedImageError:
        raise RequestError(400, f"{where} is not a readable image file (not an image format Pillow knows)") from None
    except Exception as error:  # any decoder failure on client bytes means "not an image we can read"
        reason = str(error) or type(error).__name__
        raise RequestError(400, f"{where} is not a readable image file ({reason})") from None


def _option_value(name: str, value: Any) -> Any:
    check = _OPTION_CHECKS[name]
    try:
        return check(value)
    except (TypeError, ValueError) as error:
        raise RequestError(400, f"{name}: {error}") from None


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"must be a number from {low} to {high}; got {value!r}")
        return float(value)

    return check


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"must be a whole number, 0 or more (0 = no limit); got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false; got {value!r}")
    return value


def _tag_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        return parse_tag_list(value)
    raise ValueError(f'must be a comma-separated string or a list of strings; got {value!r}')


def _order(value: Any) -> str:
    if value not in ORDERS:
        raise ValueError(f"must be one of {', '.join(ORDERS)}; got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string; got {value!r}")
    return value


def _calibration(value: Any) -> str | float | None:
    if value is None or isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return check_calibration(value)
    raise ValueError(f'must be "auto", "off", a metric such as "f1.0@0.1", or a number from 0 to 1; got {value!r}')


def _implications(value: Any) -> str:
    if value not in ALL_IMPLICATIONS:
        raise ValueError(f"must be one of {', '.join(ALL_IMPLICATIONS)}; got {value!r}")
    return value


_OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "threshold": _number(0.0, 1.0),
    "max_tags": _count,
    "exclude": _tag_list,
    "trigger_words": _tag_list,
    "replace_underscores": _flag,
    "escape_parentheses": _flag,
    "weighted": _flag,
    "order": _order,
    "separator": _text,
    "calibration": _calibration,
    "implications": _implications,  # modes that need no tag table: the JTP-3 / Hydra models carry their own
}
# The post-processing options an API request may set: the plain TagOptions fields, by name (the tag-table
# options take a loaded table, which a JSON body cannot carry).
OPTION_FIELDS = tuple(_OPTION_CHECKS)


@contextlib.contextmanager
def client_errors():
    """Core errors → RequestError with the status an HTTP client should see."""
    try:
        yield
    except ModelNotFoundError as error:
        raise RequestError(404, str(error)) from None
    except ImageError as error:
        raise RequestError(400, str(error)) from None
    except DownloadError as error:
        raise RequestError(502, str(error)) from None
    except (JTPError, ValueError) as error:  # a broken model folder or a bad device setting: the server's side
        raise RequestError(500, f"JTP Tagger could not run: {error}") from None


def _empty_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
