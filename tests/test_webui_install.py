"""install.py under the SD WebUI (its ``launch`` module importable) and on its own (ComfyUI-Manager, by hand)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAUNCH = '''
installed = {"safetensors", "pillow", "numpy"}
pip_calls = []

def is_installed(package):
    return package.lower() in installed

def run_pip(command, desc=None, live=True):
    pip_calls.append((command, desc))
'''


def load_install():
    spec = importlib.util.spec_from_file_location("jtp_install_under_test", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def requirements(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# a comment\n"
        "torch>=2.0  # the host's\n"
        "safetensors>=0.1\n"
        "pillow>=999.0\n"
        "numpy>=999.0\n"
        "jtp-not-a-real-package>=1.0\n"
        "\n"
    )
    return path


@pytest.fixture
def webui_launch(tmp_path, monkeypatch):
    """A stand-in WebUI root: launch.py (recording run_pip) and a requirements_versions.txt pinning Pillow."""
    root = tmp_path / "webui"
    root.mkdir()
    (root / "launch.py").write_text(LAUNCH)
    (root / "requirements_versions.txt").write_text("Pillow==9.5.0\nfastapi==0.94.0\ntorch\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    yield root
    sys.modules.pop("launch", None)


def test_under_the_webui_installs_through_its_pip_helper(webui_launch, requirements, capsys):
    install = load_install()
    launch = install.webui_launcher()
    assert launch is not None and launch.__file__ == str(webui_launch / "launch.py")
    asked = install.install_under_webui(launch, requirements)
    # numpy is too old but not pinned by the WebUI: upgraded; the missing package installed; quoted for the shell
    assert asked == ["numpy>=999.0", "jtp-not-a-real-package>=1.0"]
    assert [command for command, _ in launch.pip_calls] == ['install "numpy>=999.0"',
                                                            'install "jtp-not-a-real-package>=1.0"']
    assert all("torch" not in command for command, _ in launch.pip_calls)
    # Pillow is pinned by the WebUI: upgrading it would be undone at the next start, so it is left with a note
    assert "pillow 9.5.0 is pinned by the WebUI" in capsys.readouterr().out


def test_main_under_the_webui_never_calls_pip_directly(webui_launch, monkeypatch):
    install = load_install()
    monkeypatch.setattr(install, "REQUIREMENTS", ROOT / "requirements.txt")
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("pip run outside the WebUI helper"))
    monkeypatch.setattr(install, "install_under_webui", lambda launch, path: launch.pip_calls.append(("called", None)))
    assert install.main() == 0
    assert sys.modules["launch"].pip_calls == [("called", None)]


def test_on_its_own_installs_what_is_missing_with_pip(requirements, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    install = load_install()
    assert install.webui_launcher() is None  # no WebUI here: the plain path
    monkeypatch.setattr(install, "REQUIREMENTS", requirements)
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda args: calls.append(args))
    assert install.main() == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "pillow>=999.0", "numpy>=999.0",
                      "jtp-not-a-real-package>=1.0"]]


def test_on_its_own_with_everything_present_installs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    install = load_install()
    satisfied = tmp_path / "requirements.txt"
    satisfied.write_text("safetensors>=0.1\ntorch>=99\n")  # torch is never installed, whatever its version
    monkeypatch.setattr(install, "REQUIREMENTS", satisfied)
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("nothing should be installed"))
    assert install.main() == 0
    assert "all requirements are installed" in capsys.readouterr().out


def test_a_foreign_launch_module_is_not_taken_for_the_webui(tmp_path, monkeypatch):
    (tmp_path / "launch.py").write_text("VALUE = 1\n")  # some other package's module named launch
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    try:
        assert load_install().webui_launcher() is None
    finally:
        sys.modules.pop("launch", None)
