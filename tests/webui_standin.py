"""Minimal stand-ins for the SD WebUI modules the extension's script imports, and for Gradio's Blocks API.

``WebUI`` installs ``modules.*`` into sys.modules and loads ``scripts/jtp_tagger.py`` the way the WebUI does (by
file path, with the extension folder on sys.path). ``fake_gradio`` records what the tab builds — components
with their arguments, and event handlers — so tests can press its buttons. Neither is a substitute for the
real thing; they check the glue quickly.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "jtp_tagger.py"


# Gradio ----------------------------------------------------------------------------------------------------


class Event:
    def __init__(self, name: str, fn, inputs, outputs, kwargs) -> None:
        self.name, self.fn, self.inputs, self.outputs, self.kwargs = name, fn, inputs or [], outputs or [], kwargs


# The keywords that both hosts' Gradio (3.41.2 and 4.40.0) accept, read from their signatures: the tab must use
# only these (a 3.x-only keyword such as Image(source=...) breaks Forge; Gradio 3 merely warns about an unknown one).
BOTH_GRADIOS_ACCEPT = {
    "Blocks": {"analytics_enabled", "css", "mode", "theme", "title"},
    "Row": {"elem_id", "equal_height", "variant", "visible"},
    "Column": {"elem_id", "min_width", "scale", "variant", "visible"},
    "Accordion": {"elem_id", "label", "open", "visible"},
    "Tab": {"elem_id", "id", "label"},
    "Image": {"container", "elem_classes", "elem_id", "every", "height", "image_mode", "interactive", "label",
              "min_width", "mirror_webcam", "scale", "show_download_button", "show_label", "show_share_button",
              "streaming", "type", "value", "visible", "width"},
    "Dropdown": {"allow_custom_value", "choices", "container", "elem_classes", "elem_id", "every", "info",
                 "interactive", "label", "max_choices", "min_width", "multiselect", "scale", "show_label", "type",
                 "value", "visible"},
    "Button": {"elem_classes", "elem_id", "icon", "interactive", "link", "min_width", "scale", "size", "value",
               "variant", "visible"},
    "Slider": {"container", "elem_classes", "elem_id", "every", "info", "interactive", "label", "maximum",
               "min_width", "minimum", "randomize", "scale", "show_label", "step", "value", "visible"},
    "Number": {"container", "elem_classes", "elem_id", "every", "info", "interactive", "label", "maximum",
               "min_width", "minimum", "precision", "scale", "show_label", "step", "value", "visible"},
    "Textbox": {"autofocus", "container", "elem_classes", "elem_id", "every", "info", "interactive", "label",
                "lines", "max_lines", "min_width", "placeholder", "rtl", "scale", "show_copy_button", "show_label",
                "text_align", "type", "value", "visible"},
    "Checkbox": {"container", "elem_classes", "elem_id", "every", "info", "interactive", "label", "min_width",
                 "scale", "show_label", "value", "visible"},
    "Radio": {"choices", "container", "elem_classes", "elem_id", "every", "info", "interactive", "label",
              "min_width", "scale", "show_label", "type", "value", "visible"},
    "Dataframe": {"col_count", "datatype", "elem_classes", "elem_id", "every", "headers", "height", "interactive",
                  "label", "latex_delimiters", "min_width", "row_count", "scale", "show_label", "type", "value",
                  "visible", "wrap"},
    "Markdown": {"elem_classes", "elem_id", "latex_delimiters", "rtl", "value", "visible"},
    "HTML": {"elem_classes", "elem_id", "every", "label", "show_label", "value", "visible"},
}
EVENT_KEYWORDS = {"api_name", "batch", "cancels", "every", "fn", "inputs", "max_batch_size", "outputs",
                  "postprocess", "preprocess", "queue", "scroll_to_output", "show_progress"}


def fake_gradio(version: str = "3.41.2") -> types.ModuleType:
    gr = types.ModuleType("gradio")
    gr.__version__ = version
    stack: list[Any] = []
    js_keyword = "_js" if int(version.split(".")[0]) < 4 else "js"  # the event's JavaScript, per version

    class Component:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            unknown = set(kwargs) - BOTH_GRADIOS_ACCEPT[type(self).__name__]
            if unknown:
                raise TypeError(f"{type(self).__name__}() got keyword(s) not both Gradios take: {sorted(unknown)}")
            self.args, self.kwargs = args, kwargs
            self.children: list[Component] = []
            self.events: list[Event] = []
            if stack:
                stack[-1].children.append(self)

        def __enter__(self):
            stack.append(self)
            return self

        def __exit__(self, *exc):
            stack.pop()

        def click(self, fn=None, inputs=None, outputs=None, **kwargs):
            unknown = set(kwargs) - EVENT_KEYWORDS - {js_keyword}
            if unknown:
                raise TypeError(f"click() got keyword(s) Gradio {version} does not take: {sorted(unknown)}")
            self.events.append(Event("click", fn, inputs, outputs, kwargs))

        change = click

        def walk(self):
            yield self
            for child in self.children:
                yield from child.walk()

        def find(self, elem_id: str):
            return next(item for item in self.walk() if item.kwargs.get("elem_id") == elem_id)

        def buttons(self, label: str):
            return [item for item in self.walk() if type(item).__name__ == "Button" and label in item.args]

    for name in ("Blocks", "Row", "Column", "Accordion", "Tab", "Image", "Dropdown", "Button", "Slider", "Number",
                 "Textbox", "Checkbox", "Radio", "Dataframe", "Markdown", "HTML"):
        setattr(gr, name, type(name, (Component,), {}))

    class Progress:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, str | None]] = []

        def __call__(self, value, desc=None, **kwargs):
            self.calls.append((value, desc))

    class Error(Exception):
        pass

    gr.Progress, gr.Error = Progress, Error
    gr.update = lambda **kwargs: {"__type__": "update", **kwargs}
    return gr


# WebUI modules -----------------------------------------------------------------------------------------------


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, **kwargs):
        self.default, self.label, self.component, self.component_args = default, label, component, component_args
        self.section = section


class Options:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.data_labels: dict[str, OptionInfo] = {}

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)


class WebUI:
    """The WebUI modules; ``load_script()`` returns the script module with its callbacks registered here."""

    MODULES = ("modules", "modules.script_callbacks", "modules.shared", "modules.paths_internal",
               "modules.call_queue", "modules.devices", "gradio")

    def __init__(self, webui_root: Path, gradio_version: str = "3.41.2", cmd_opts: dict | None = None) -> None:
        self.root = webui_root
        self.models_path = webui_root / "models"
        self.callbacks: dict[str, list] = {}
        self.opts = Options()
        self.cmd_opts = types.SimpleNamespace(**{"api": False, "nowebui": False, "api_auth": None, **(cmd_opts or {})})
        self.queue_lock = threading.Lock()
        self.gr = fake_gradio(gradio_version)
        self._saved: dict[str, Any] = {}

    def install(self) -> None:
        for name in self.MODULES:
            self._saved[name] = sys.modules.get(name)
        modules = types.ModuleType("modules")
        modules.__path__ = []
        callbacks = types.ModuleType("modules.script_callbacks")
        for event in ("after_component", "ui_tabs", "ui_settings", "app_started", "script_unloaded"):
            setattr(callbacks, f"on_{event}", self._recorder(event))
        shared = types.ModuleType("modules.shared")
        shared.opts, shared.cmd_opts, shared.OptionInfo = self.opts, self.cmd_opts, OptionInfo
        paths_internal = types.ModuleType("modules.paths_internal")
        paths_internal.models_path = str(self.models_path)
        call_queue = types.ModuleType("modules.call_queue")
        call_queue.queue_lock = self.queue_lock
        devices = types.ModuleType("modules.devices")
        devices.get_device_for = lambda task: "cpu"
        for module in (callbacks, shared, paths_internal, call_queue, devices):
            setattr(modules, module.__name__.split(".")[-1], module)
            sys.modules[module.__name__] = module
        sys.modules["modules"] = modules
        sys.modules["gradio"] = self.gr

    def uninstall(self) -> None:
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

    def _recorder(self, event: str):
        def register(callback, *, name=None):
            self.callbacks.setdefault(event, []).append(callback)

        return register

    def load_script(self) -> types.ModuleType:
        """Load scripts/jtp_tagger.py as the WebUI does: by path, extension folder on sys.path while loading."""
        saved_path = list(sys.path)
        sys.path.insert(0, str(ROOT))
        try:
            spec = importlib.util.spec_from_file_location(SCRIPT.name, SCRIPT)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path[:] = saved_path
        return module

    def build_ui(self, prompt_ids=("txt2img_prompt", "img2img_prompt")):
        """What the WebUI does before the extension tabs: build the prompt boxes (telling after_component)."""
        boxes = {}
        for elem_id in prompt_ids:
            box = self.gr.Textbox(label="Prompt", elem_id=elem_id)
            for callback in self.callbacks.get("after_component", []):
                callback(box, label="Prompt", elem_id=elem_id)
            boxes[elem_id] = box
        for callback in self.callbacks.get("ui_settings", []):
            callback()
        tabs = [tab for callback in self.callbacks["ui_tabs"] for tab in callback()]
        return boxes, tabs
