"""``python -m jtp_core -h`` answers at once: parsing the command line never imports torch (issue #14, item 14)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from jtp_core.cli.main import build_parser
parser = build_parser()
for command in ([], ["tag"], ["caption"], ["heatmap"]):
    try:
        parser.parse_args([*command, "-h"])
    except SystemExit:
        pass
import jtp_core
jtp_core.JTPError, jtp_core.DEFAULT_MODEL  # torch-free names stay torch-free
print(sorted({name.split(".")[0] for name in sys.modules} & {"torch", "numpy", "timm", "huggingface_hub"}))
"""


def test_help_of_every_command_imports_no_torch():
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_package_names_still_resolve_lazily():
    import jtp_core

    assert jtp_core.TagOptions().threshold == 0.2
    assert callable(jtp_core.load_tagger) and "load_tagger" in dir(jtp_core)
    from jtp_core import Tagger, tag_results  # noqa: F401 - "from" imports go through __getattr__ too

    try:
        jtp_core.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
