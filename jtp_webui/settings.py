"""The extension's WebUI settings as plain data, and the service configuration read back from them.

The script turns each ``Setting`` into the WebUI's ``OptionInfo`` (kind → Gradio component); reading them back
goes through ``read_config`` with a plain getter, so it is testable without the WebUI and tolerant of values
an older config.json may hold (a number saved as text, a choice that no longer exists).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jtp_core import DEFAULT_MODEL, TagOptions, parse_tag_list
from jtp_core.inference.devices import DEVICES, PRECISIONS
from jtp_core.tags.postprocess import check_calibration

from .service import ServiceConfig

SECTION = ("jtp", "JTP Tagger")
PREFIX = "jtp_"


@dataclass(frozen=True)
class Setting:
    name: str  # stored as PREFIX + name in the WebUI's config.json
    default: Any
    label: str
    kind: str = "auto"  # auto (textbox / checkbox from the default) | radio | slider | models
    args: tuple = ()  # radio: the choices; slider: (minimum, maximum, step)

    @property
    def key(self) -> str:
        return PREFIX + self.name


SETTINGS: tuple[Setting, ...] = (
    Setting("models_dir", "", "Extra models folder, searched first and used for downloads (empty: models/jtp)"),
    Setting("default_model", DEFAULT_MODEL, "Default model", "models"),
    Setting("device", "auto", "Device (auto: the WebUI's interrogate device)", "radio", DEVICES),
    Setting("precision", "auto", "Precision (auto: fp32 on the CPU; on a GPU fp16 for JTP-1, bf16 for JTP-3 / Hydra)",
            "radio", PRECISIONS),
    Setting("threshold", 0.2, "Default threshold (keep tags scoring above it)", "slider", (0.0, 1.0, 0.01)),
    Setting("calibration", "auto", "JTP-3 / Hydra thresholds: auto (each tag's calibrated threshold), off (the "
            "threshold above), a metric such as f2.0@0.1, or 0 (recall) … 1 (precision)"),
    Setting("sequence_length", 1024, "JTP-3 / Hydra: patches per image (1024 = as trained; more sees finer detail)",
            "slider", (64, 2048, 64)),
    Setting("max_tags", 250, "Default maximum number of tags (0 = no limit)", "slider", (0, 1000, 1)),
    Setting("exclude", "", "Tags always excluded (comma-separated, * matches anything)"),
    Setting("replace_underscores", True, "Underscores as spaces"),
    Setting("escape_parentheses", True, r"Escape parentheses for prompts: \( \)"),
    Setting("batch_size", 0, "Batch size (0 = automatic: 1 on the CPU, from free memory on a GPU)", "slider",
            (0, 256, 1)),
    Setting("keep_loaded", True, "Keep the model loaded between uses (off: free its memory after each use)"),
    Setting("download", True, "Download a known model that is missing (1–1.8 GB, into the models folder)"),
)
DEFAULTS = {setting.name: setting.default for setting in SETTINGS}


@dataclass(frozen=True)
class HostSettings:
    """Settings as read from the host, by short name; missing or unusable values fall back to the defaults."""

    values: dict[str, Any]

    @classmethod
    def read(cls, get: Callable[[str, Any], Any]) -> HostSettings:
        return cls({setting.name: get(setting.key, setting.default) for setting in SETTINGS})

    def text(self, name: str) -> str:
        value = self.values.get(name)
        return value.strip() if isinstance(value, str) else DEFAULTS[name]

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        return value if isinstance(value, bool) else DEFAULTS[name]

    def number(self, name: str, cast: type = float) -> Any:
        try:
            return cast(self.values.get(name))
        except (TypeError, ValueError):
            return DEFAULTS[name]

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.values.get(name)
        return value if value in choices else DEFAULTS[name]


def models_dirs(host: HostSettings, webui_models_dir: Path) -> tuple[Path, ...]:
    extra = host.text("models_dir")
    default = Path(webui_models_dir)
    return (Path(extra).expanduser(), default) if extra else (default,)


def tag_options(host: HostSettings) -> TagOptions:
    return TagOptions(
        threshold=min(max(host.number("threshold"), 0.0), 1.0),
        max_tags=max(host.number("max_tags", int), 0),
        exclude=parse_tag_list(host.text("exclude")),
        replace_underscores=host.flag("replace_underscores"),
        escape_parentheses=host.flag("escape_parentheses"),
        calibration=_calibration(host.text("calibration")),
    )


def _calibration(text: str) -> str | float | None:
    """A setting an older or hand-edited config may hold wrongly falls back to "auto" rather than breaking."""
    try:
        return check_calibration(text)
    except ValueError:
        return DEFAULTS["calibration"]


def service_config(host: HostSettings, webui_models_dir: Path) -> ServiceConfig:
    """The service configuration the settings describe (an 'auto' device is left for the script to settle)."""
    return ServiceConfig(
        models_dirs=models_dirs(host, webui_models_dir),
        default_model=host.text("default_model") or DEFAULT_MODEL,
        device=host.choice("device", DEVICES),
        precision=host.choice("precision", PRECISIONS),
        batch_size=max(host.number("batch_size", int), 0) or None,
        sequence_length=min(max(host.number("sequence_length", int), 64), 2048),
        download=host.flag("download"),
        keep_loaded=host.flag("keep_loaded"),
        options=tag_options(host),
    )
