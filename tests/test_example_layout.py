"""The example workflows open with every node visible: no node drawn over another (the real frontend showed the
Hydra example's Note covering the JTP Model Loader, so the model could not be chosen without moving it)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[1] / "example_workflows").glob("*.json"))
TITLE = 30  # LiteGraph draws a node's title bar above its pos


def _box(node: dict) -> tuple[float, float, float, float]:
    (x, y), (width, height) = node["pos"], node["size"]
    return x, y - TITLE, x + width, y + height


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_node_covers_another(path):
    nodes = json.loads(path.read_text())["nodes"]
    for a, b in itertools.combinations(nodes, 2):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _box(a), _box(b)
        assert not (ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1), f"{a['type']} and {b['type']} overlap"


def test_workflows_are_found():
    assert len(WORKFLOWS) >= 7
