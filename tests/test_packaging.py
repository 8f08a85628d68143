"""What the Comfy Registry and ComfyUI-Manager read: pyproject fields, node descriptions and tooltips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_registry_fields():
    data = _pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert project["name"] == project["name"].lower() and "comfyui" not in project["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])  # semver
    assert project["description"] and project["license"]
    assert project["urls"]["Repository"].startswith("https://")
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"]
    assert comfy["requires-comfyui"].startswith(">=")
    # the runtime dependencies are requirements.txt's (what ComfyUI-Manager installs), never torch
    requirements = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    assert sorted(project["dependencies"]) == sorted(requirements)
    assert not any(dep.split(">")[0].split("=")[0] in ("torch", "torchvision") for dep in project["dependencies"])


def test_icon_fits_the_registry():
    icon = _pyproject()["tool"]["comfy"]["Icon"]
    local = ROOT / "web" / Path(icon).name
    assert local.exists(), f"{icon} should be the committed {local}"
    with Image.open(local) as image:
        assert image.width <= 800 and image.height <= 400


def test_every_node_is_described_with_tooltips(comfy):
    _, pack = comfy
    for name, node in pack.NODE_CLASS_MAPPINGS.items():
        assert len(getattr(node, "DESCRIPTION", "")) > 40, f"{name} has no description"
        tooltips = getattr(node, "OUTPUT_TOOLTIPS", ())
        assert len(tooltips) == len(node.RETURN_TYPES) and all(tooltips), f"{name}: an output has no tooltip"
