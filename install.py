"""Install what requirements.txt lists and this interpreter lacks. Never touches torch or torchvision.

ComfyUI-Manager runs this after installing requirements.txt; it can also be run by hand with the
interpreter ComfyUI uses: ``python install.py``. Running it again installs nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

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


def main() -> int:
    missing = missing_requirements()
    if not missing:
        print("[JTP Tagger] all requirements are installed")
        return 0
    print(f"[JTP Tagger] installing: {' '.join(missing)}")
    pip_install(missing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
