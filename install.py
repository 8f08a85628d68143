"""Install what requirements.txt lists and this interpreter lacks, without disturbing the host's packages.

ComfyUI-Manager runs this after installing requirements.txt; it can also be run by hand with the interpreter
ComfyUI uses: ``python install.py``. The SD WebUI (A1111 / Forge) runs it at start-up with its ``launch`` module
importable; then packages go through the WebUI's own pip helper (``launch.run_pip``, which honours its index URL).
Running it again installs nothing.

The rules, on every host:

- torch, torchvision and torchaudio are the host's build (CUDA, ROCm, CPU): never installed, upgraded or
  replaced. Their installed versions are pinned in the constraints file pip gets, so no dependency swaps them.
- torchvision is never pulled in where it is missing: pip would take the newest, which wants the newest torch and
  replaces the host's (a 5 GB CUDA build in place of a CPU one), and a PyPI torchvision beside a CPU or ROCm torch
  does not even import. timm imports torchvision at ``import timm``, so without it timm is of no use: it is
  left out (installed with ``--no-deps`` it would only add "timm requires torchvision" to ``pip check``), the
  rest is installed, and the installer names the torchvision build that matches the host's torch and exits
  with 1; run it again once torchvision is there.
- The version bounds that installed packages declare on their requirements go into the constraints file, so
  ``pip check`` is never left worse than it was found (it is run before and after to make sure). A requirement
  that was already broken is not repaired either: its package is pinned where it is.
- A package the host has in a version too old for us is raised to the lowest version we support (the smallest
  step; CI tests that end of the range), if the host's bounds allow it; else it is left as is, with a message.
- Under the SD WebUI a package its requirements_versions.txt pins is left alone: the WebUI puts its pins back
  at every start, so changing one would be undone and redone at each launch.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version
except ImportError:  # not installed on its own: every pip that can run this carries a copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.specifiers import InvalidSpecifier, SpecifierSet
    from pip._vendor.packaging.utils import canonicalize_name
    from pip._vendor.packaging.version import InvalidVersion, Version

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
HOST_OWNED = ("torch", "torchvision", "torchaudio")  # the host's build must not be replaced
NEEDS_HOST_TORCH = {"timm": ("torch", "torchvision")}  # imports them: useless, and not installed, without them
PREFIX = "[JTP Tagger]"


@dataclass(frozen=True)
class Dist:
    """An installed distribution: its name, version and declared requirements (metadata ``Requires-Dist``)."""

    name: str
    version: str
    requires: tuple[str, ...] = ()


@dataclass
class Constraints:
    """Version ranges pip must keep to, by canonical name, with who asked for each (for messages)."""

    specs: dict[str, SpecifierSet] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    why: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, spec: str, why: str) -> None:
        key = canonicalize_name(name)
        try:
            self.specs[key] = self.specs.get(key, SpecifierSet()) & SpecifierSet(spec)
        except InvalidSpecifier:  # e.g. a pin to a version that is no PEP 440 version: pip could not use it either
            return
        self.names.setdefault(key, name)
        self.why.setdefault(key, []).append(why)

    def allows(self, name: str, version: str) -> bool:
        return contains(self.specs.get(canonicalize_name(name), SpecifierSet()), version)

    def lines(self) -> list[str]:
        """The constraints file: one ``name<spec>`` line per package."""
        return [f"{self.names[key]}{spec}" for key, spec in sorted(self.specs.items()) if str(spec)]


@dataclass
class Plan:
    install: list[str] = field(default_factory=list)  # requirement strings for pip
    notes: list[str] = field(default_factory=list)  # what was left as is, and why
    missing_host: list[str] = field(default_factory=list)  # torch / torchvision that timm needs and the host lacks


# reading --------------------------------------------------------------------------------------------------------


def read_requirements(path: Path = REQUIREMENTS) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def distribution_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def contains(spec: SpecifierSet, version: str) -> bool:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:  # a version pip itself could not compare: take it as it is
        return True


def installed_distributions() -> dict[str, Dist]:
    """What this interpreter has, by canonical name (the first on sys.path wins, as for imports)."""
    found: dict[str, Dist] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), Dist(name, dist.version, tuple(dist.requires or ())))
    return found


def is_satisfied(requirement: str, installed: Mapping[str, Dist] | None = None) -> bool:
    """Installed, in the version range asked for."""
    installed = installed_distributions() if installed is None else installed
    req = Requirement(requirement)
    have = installed.get(canonicalize_name(req.name))
    return have is not None and contains(req.specifier, have.version)


def _active(requirement: Requirement) -> bool:
    """A requirement that applies here: its marker (if any) holds, and it belongs to no extra."""
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


# deciding -------------------------------------------------------------------------------------------------------


def host_constraints(installed: Mapping[str, Dist], pins: Mapping[str, str] | None = None) -> Constraints:
    """What pip must not change: the host's torch builds, the installed packages' declared version bounds,
    and (under the WebUI) its pins."""
    constraints = Constraints()
    for name in HOST_OWNED:
        have = installed.get(name)
        if have is not None:
            constraints.add(have.name, f"=={have.version}", "the host's build")
    for dist in installed.values():
        for line in dist.requires:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if not _active(req) or not str(req.specifier):
                continue  # no version bound: nothing to respect
            target = installed.get(canonicalize_name(req.name))
            if target is not None and not contains(req.specifier, target.version):
                # already broken before this installer ran: not its business to repair, nor to make worse
                constraints.add(target.name, f"=={target.version}", f"{dist.name} {dist.version} asks for {line}"
                                f" but has {target.version} (left as is)")
                continue
            constraints.add(req.name, str(req.specifier), f"{dist.name} {dist.version} requires {line}")
    for name, version in (pins or {}).items():
        have = installed.get(canonicalize_name(name))
        constraints.add(name, f"=={have.version if have else version}", "pinned by the WebUI")
    return constraints


def lowest_version(spec: SpecifierSet) -> str | None:
    """The low end of a range (``>=1.2`` → ``1.2``), or None when it has none."""
    lows = [Version(item.version) for item in spec if item.operator in (">=", "==", "~=") and "*" not in item.version]
    return str(max(lows)) if lows else None


def plan_install(
    requirements: Iterable[str],
    installed: Mapping[str, Dist],
    constraints: Constraints,
    pinned: Iterable[str] = (),
) -> Plan:
    plan = Plan()
    pinned = {canonicalize_name(name) for name in pinned}
    for line in requirements:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        if key in HOST_OWNED:
            continue
        have = installed.get(key)
        satisfied = have is not None and contains(req.specifier, have.version)
        missing_host = [name for name in NEEDS_HOST_TORCH.get(key, ()) if name not in installed]
        if missing_host:
            plan.missing_host = missing_host
            if not satisfied:
                plan.notes.append(f"{req.name} left out: it needs {' and '.join(missing_host)} from the host")
            continue
        if satisfied:
            continue
        target = line  # not installed: the newest version that our range and the host's bounds allow
        if have is not None:
            if key in pinned:
                plan.notes.append(f"{req.name} {have.version} is pinned by the WebUI; wanted {line}, left as is")
                continue
            low = lowest_version(req.specifier)
            if low is not None:
                if not constraints.allows(req.name, low):
                    why = "; ".join(constraints.why.get(key, []))
                    plan.notes.append(f"{req.name} {have.version} is too old (wanted {line}), and {why}: left as is")
                    continue
                target = f"{req.name}=={low}"  # the smallest step from what the host has
        plan.install.append(target)
    return plan


def matching_torchvision(torch_version: str) -> str:
    """The pip command for the torchvision build that goes with ``torch_version`` (2.N → 0.(N+15), same index)."""
    release, _, local = torch_version.partition("+")
    parts = release.split(".")
    spec = "torchvision"
    if len(parts) >= 2 and parts[0] == "2" and parts[1].isdigit():
        spec = f"torchvision==0.{int(parts[1]) + 15}.*"
    index = f" --index-url https://download.pytorch.org/whl/{local}" if re.fullmatch(r"cpu|cu\d+|rocm[\d.]+", local) \
        else ""
    return f'"{sys.executable}" -m pip install "{spec}"{index}'


def missing_host_message(missing: list[str], installed: Mapping[str, Dist]) -> str:
    if "torch" in missing:
        return ("timm needs torch and torchvision, and this Python has no torch: install the build for your hardware "
                "(https://pytorch.org/get-started/locally/), then run install.py again.")
    torch = installed["torch"].version
    return (f"timm imports torchvision, which this Python lacks. It was not installed for you: pip would replace "
            f"torch {torch} to fit the newest one. Install the build that matches torch {torch}:\n    "
            f"{matching_torchvision(torch)}")


# doing ----------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def constraints_file(constraints: Constraints) -> Iterator[Path]:
    handle, name = tempfile.mkstemp(prefix="jtp-constraints-", suffix=".txt")
    path = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write("\n".join(constraints.lines()) + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def pip_install(requirements: list[str], constraints: Path) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-c", str(constraints), *requirements])


def pip_check() -> set[str]:
    """``pip check``'s complaints (empty when all is consistent)."""
    run = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    return {line.strip() for line in run.stdout.splitlines() if line.strip() and "No broken" not in line}


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


def install_under_webui(launch: ModuleType, requirements: list[str], constraints: Path) -> None:
    """Install through the WebUI's pip helper."""
    # run_pip goes through a shell: quote everything, or ">=" would redirect to a file
    quoted = " ".join(f'"{item}"' for item in requirements)
    launch.run_pip(f'install -c "{constraints}" {quoted}', f"JTP Tagger requirements: {' '.join(requirements)}")


def main() -> int:
    launch = webui_launcher()
    installed = installed_distributions()
    pins = webui_pins(launch) if launch is not None else {}
    constraints = host_constraints(installed, pins)
    plan = plan_install(read_requirements(REQUIREMENTS), installed, constraints, pinned=pins)
    for note in plan.notes:
        print(f"{PREFIX} {note}")
    status = 0
    if not plan.install:
        if not plan.notes:
            print(f"{PREFIX} all requirements are installed")
    else:
        print(f"{PREFIX} installing: {' '.join(plan.install)}")
        before = pip_check()
        with constraints_file(constraints) as path:
            try:
                if launch is not None:
                    install_under_webui(launch, plan.install, path)
                else:
                    pip_install(plan.install, path)
            except (subprocess.CalledProcessError, RuntimeError) as error:  # RuntimeError: the WebUI's run_pip
                print(f"{PREFIX} pip could not install them within the versions the installed packages allow "
                      f"({error}); these were its constraints:\n    " + "\n    ".join(constraints.lines()))
                return 1
        worse = sorted(pip_check() - before)
        if worse:
            print(f"{PREFIX} pip check reports new problems after the install:\n    " + "\n    ".join(worse))
            status = 1
    if plan.missing_host:
        print(f"{PREFIX} {missing_host_message(plan.missing_host, installed)}")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
