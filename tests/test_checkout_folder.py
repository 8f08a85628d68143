"""The suite runs whatever the checkout folder is called (``git clone … jtp-tagger``, ``custom_nodes/<any-name>``).

The root's ``__init__.py`` (ComfyUI's entry point) must not be imported by pytest: as a loose module its relative
import fails and every test errors; under an identifier name it would load the whole pack a second time.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = '''
import sys

def test_probe():
    assert not any(name == "{name}" or name.startswith("{name}.") for name in sys.modules)
'''


@pytest.mark.parametrize("folder", ["jtp-tagger", "jtp_tagger"])
def test_pytest_never_imports_the_checkout_root(tmp_path, folder):
    checkout = tmp_path / folder
    (checkout / "tests").mkdir(parents=True)
    for name in ("pyproject.toml", "__init__.py", "tests/checkout_root_plugin.py"):
        shutil.copy(ROOT / name, checkout / name)
    (checkout / "tests" / "test_probe.py").write_text(PROBE.format(name=folder))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=checkout, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
