"""SD WebUI (A1111 / Forge) entry point: the JTP Tagger tab, its settings, and the /jtp/v1 API.

The WebUI imports ``scripts/*.py`` with the extension folder on ``sys.path`` only while it loads them, so the
extension's packages are imported here, at load time; later imports of their submodules go through the
packages already loaded. Everything but the WebUI glue lives in ``jtp_webui`` (and the model in ``jtp_core``).
This file never imports ComfyUI, and the extension's root ``__init__.py`` (ComfyUI's entry) is never run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from modules import script_callbacks, shared

import jtp_core  # noqa: F401 - loaded now, while the extension folder is on sys.path
import jtp_core.captioning.caption  # noqa: F401 - the tab's folder captioning imports it later
from jtp_webui import api, settings, ui
from jtp_webui.service import ServiceConfig, TaggerService

PROMPT_BOXES = {"txt2img_prompt": "txt2img", "img2img_prompt": "img2img"}
_prompt_boxes: dict[str, Any] = {}  # tab name → the WebUI's prompt Textbox, caught as the WebUI builds them


def webui_models_dir() -> Path:
    from modules.paths_internal import models_path

    return Path(models_path) / "jtp"


def read_config() -> ServiceConfig:
    host = settings.HostSettings.read(lambda key, default: shared.opts.data.get(key, default))
    config = settings.service_config(host, webui_models_dir())
    if config.device == "auto":
        config = dataclasses.replace(config, device=_interrogate_device())
    return config


def _interrogate_device() -> str:
    """The device the WebUI gives interrogators (it honours ``--use-cpu interrogate`` / ``all``); else auto."""
    try:
        from modules import devices

        return str(devices.get_device_for("interrogate"))
    except Exception:  # a WebUI variant without this helper: let the core choose
        return "auto"


def _run_lock():
    """The WebUI's queue lock, so the tagger and image generation take turns on the GPU."""
    try:
        from modules.call_queue import queue_lock

        return queue_lock
    except ImportError:
        return None


service = TaggerService(read_config, run_lock=_run_lock())


def on_after_component(component: Any, **kwargs: Any) -> None:
    target = PROMPT_BOXES.get(kwargs.get("elem_id") or "")
    if target is not None:
        _prompt_boxes[target] = component  # the latest: a rebuilt UI must not keep the previous UI's box


def on_ui_tabs() -> list[tuple[Any, str, str]]:
    import gradio as gr

    return [(ui.build_tab(gr, service, _prompt_boxes), "JTP Tagger", "jtp_tagger")]


def on_ui_settings() -> None:
    import gradio as gr

    for setting in settings.SETTINGS:
        component, args = _component(gr, setting)
        info = shared.OptionInfo(setting.default, setting.label, component, args, section=settings.SECTION)
        shared.opts.add_option(setting.key, info)


def _component(gr: Any, setting: settings.Setting) -> tuple[Any, Any]:
    if setting.kind == "radio":
        return gr.Radio, {"choices": list(setting.args)}
    if setting.kind == "slider":
        low, high, step = setting.args
        return gr.Slider, {"minimum": low, "maximum": high, "step": step}
    if setting.kind == "models":
        return gr.Dropdown, lambda: {"choices": service.model_names()}
    return None, None


def on_app_started(demo: Any, app: Any) -> None:
    # Like the WebUI's own API: served with --api, or always under --nowebui (demo is None then).
    cmd_opts = shared.cmd_opts
    if demo is None or getattr(cmd_opts, "api", False) or getattr(cmd_opts, "nowebui", False):
        api.add_routes(app, service, api_auth=getattr(cmd_opts, "api_auth", None))


script_callbacks.on_after_component(on_after_component)
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_script_unloaded(service.unload)
