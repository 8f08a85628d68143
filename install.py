"""Install what requirements.txt lists and this interpreter lacks. Never touches torch or torchvision.

ComfyUI-Manager runs this after installing requirements.txt; it can also be run by hand with the
interpreter ComfyUI uses: ``python install.py``. Running it again installs nothing.

The SD WebUI (A1111 / Forge) runs it at start-up with its ``launch`` module importable; then packages go
through the WebUI's own pip helper (``launch.run_pip``, which honours its index URL), and a package the WebUI
pins in its requirements_versions.txt is left alone: the WebUI puts its pins back at every start, so upgrading
one would be undone and redone at each launch, and could break the WebUI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
HOST_OWNED = {"torch", "torchvision", "torchaudio"}  # the host's build (CUDA, ROCm, CPU) must not be replaced


def read_requirements(path: Path = REQUIREMENTS) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def distribution_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def is_satisfied(requirement: str) -> bool:
    """Installed, and within the version range when ``packaging`` is there to check it."""
    try:
        installed = metadata.version(distribution_name(requirement))
    except metadata.PackageNotFoundError:
        return False
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return True
    return Requirement(requirement).specifier.contains(installed, prereleases=True)


def missing_requirements(path: Path = REQUIREMENTS) -> list[str]:
    return [
        requirement
        for requirement in read_requirements(path)
        if distribution_name(requirement).lower() not in HOST_OWNED and not is_satisfied(requirement)
    ]


def pip_install(requirements: list[str]) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", *requirements])


def webui_launcher() -> ModuleType | None:
    """The SD WebUI's ``launch`` module when the WebUI runs this file (its root is on PYTHONPATH), else None."""
    try:
        import launch
    except ImportError:
        return None
    if callable(getattr(launch, "run_pip", None)) and callable(getattr(launch, "is_installed", None)):
        return launch
    return None


def webui_pins(launch: ModuleType) -> dict[str, str]:
    """``name == version`` pins of the WebUI's requirements_versions.txt (beside launch.py), by lower-case name."""
    path = Path(getattr(launch, "__file__", "") or ".").resolve().parent / "requirements_versions.txt"
    if not path.is_file():
        return {}
    pins = {}
    for requirement in read_requirements(path):
        name, _, version = requirement.partition("==")
        if version:
            pins[name.strip().lower()] = version.strip()
    return pins


def install_under_webui(launch: ModuleType, path: Path = REQUIREMENTS) -> list[str]:
    """Install through the WebUI's pip helper; returns what was asked of it."""
    pins = webui_pins(launch)
    installed = []
    for requirement in read_requirements(path):
        name = distribution_name(requirement)
        if name.lower() in HOST_OWNED or (launch.is_installed(name) and is_satisfied(requirement)):
            continue
        if name.lower() in pins and launch.is_installed(name):
            print(f"[JTP Tagger] {name} {pins[name.lower()]} is pinned by the WebUI; wanted {requirement}, left as is")
            continue
        # run_pip goes through a shell: quote the requirement, or ">=" would redirect to a file
        launch.run_pip(f'install "{requirement}"', f"JTP Tagger requirement: {requirement}")
        installed.append(requirement)
    return installed


def main() -> int:
    launch = webui_launcher()
    if launch is not None:
        install_under_webui(launch, REQUIREMENTS)
        return 0
    missing = missing_requirements(REQUIREMENTS)
    if not missing:
        print("[JTP Tagger] all requirements are installed")
        return 0
    print(f"[JTP Tagger] installing: {' '.join(missing)}")
    pip_install(missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
