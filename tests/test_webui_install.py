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
    sys.modules[spec.name] = module  # dataclasses look their module up there
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


def stand_in_host(install):
    """Installed: torch + torchvision, safetensors, an old Pillow (the WebUI pins 9.5.0) and an old numpy."""
    Dist = install.Dist
    dists = [Dist("torch", "2.1.2+cu121"), Dist("torchvision", "0.16.2+cu121", ("torch==2.1.2",)),
             Dist("safetensors", "0.4.2"), Dist("Pillow", "9.4.0"), Dist("numpy", "1.26.2")]
    return {install.canonicalize_name(dist.name): dist for dist in dists}


def test_under_the_webui_installs_through_its_pip_helper(webui_launch, requirements, monkeypatch, capsys):
    install = load_install()
    launch = install.webui_launcher()
    assert launch is not None and launch.__file__ == str(webui_launch / "launch.py")
    monkeypatch.setattr(install, "REQUIREMENTS", requirements)
    monkeypatch.setattr(install, "installed_distributions", lambda: stand_in_host(install))
    monkeypatch.setattr(install, "pip_check", lambda: set())
    seen = []
    monkeypatch.setattr(launch, "run_pip", lambda command, desc=None, live=True: seen.append(
        (command, Path(command.split('-c "', 1)[1].split('"', 1)[0]).read_text().splitlines())))
    assert install.main() == 0
    (command, constraints), = seen
    # numpy is too old but not pinned by the WebUI: raised to our lowest; the missing package installed; all
    # quoted for the shell, with the constraints file
    assert command.startswith('install -c "') and command.endswith('"numpy==999.0" "jtp-not-a-real-package>=1.0"')
    assert "torch" not in command.split('"', 2)[2]
    assert any(line.startswith("torch=") and line.endswith("==2.1.2+cu121") for line in constraints)
    assert "pillow==9.4.0" in [line.lower() for line in constraints]  # pinned by the WebUI: kept where it is
    # Pillow is pinned by the WebUI: upgrading it would be undone at the next start, so it is left with a note
    assert "pillow 9.4.0 is pinned by the WebUI" in capsys.readouterr().out


def test_main_under_the_webui_never_calls_pip_directly(webui_launch, requirements, monkeypatch):
    install = load_install()
    monkeypatch.setattr(install, "REQUIREMENTS", requirements)
    monkeypatch.setattr(install, "installed_distributions", lambda: stand_in_host(install))
    monkeypatch.setattr(install, "pip_check", lambda: set())
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("pip run outside the WebUI helper"))
    assert install.main() == 0
    assert [command.split('" ', 1)[1] for command, _ in sys.modules["launch"].pip_calls] == [
        '"numpy==999.0" "jtp-not-a-real-package>=1.0"']


def test_on_its_own_installs_what_is_missing_with_pip(requirements, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    install = load_install()
    assert install.webui_launcher() is None  # no WebUI here: the plain path
    monkeypatch.setattr(install, "REQUIREMENTS", requirements)
    monkeypatch.setattr(install, "installed_distributions", lambda: stand_in_host(install))
    monkeypatch.setattr(install, "pip_check", lambda: set())
    calls = []
    monkeypatch.setattr(subprocess, "check_call", lambda args: calls.append(args))
    assert install.main() == 0
    (call,) = calls
    assert call[:5] == [sys.executable, "-m", "pip", "install", "-c"]
    assert call[6:] == ["pillow==999.0", "numpy==999.0", "jtp-not-a-real-package>=1.0"]


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
