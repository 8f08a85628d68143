"""install.py's decisions, from stand-in metadata of installed packages (no pip run, no network).

The hosts here are the ones seen to break: a venv with a CPU torch and no torchvision (pip swapped in a 5 GB
CUDA torch to fit the newest torchvision), and an A1111 WebUI venv whose transformers 4.30.2 requires
huggingface-hub<1.0 (the installer put in 2.x, and the WebUI's own model loading failed).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_install():
    spec = importlib.util.spec_from_file_location("jtp_install_for_plans", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


install = load_install()
Dist = install.Dist
OURS = install.read_requirements(ROOT / "requirements.txt")


def host(*dists):
    return {install.canonicalize_name(dist.name): dist for dist in dists}


def cpu_torch_without_torchvision():
    return host(
        Dist("torch", "2.13.0+cpu", ("filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1",
                                     "jinja2", "fsspec>=0.8.5")),
        Dist("numpy", "2.1.0"),
        Dist("filelock", "3.16.0"),
    )


def a1111():
    return host(
        Dist("torch", "2.1.2+cu121", ("filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec")),
        Dist("torchvision", "0.16.2+cu121", ("numpy", "requests", "torch==2.1.2", "pillow!=8.3.*,>=5.3.0")),
        Dist("transformers", "4.30.2", ("filelock", "huggingface-hub<1.0,>=0.14.1", "numpy>=1.17",
                                        "safetensors>=0.3.1", "tokenizers!=0.11.3,<0.14,>=0.11.1",
                                        "accelerate>=0.20.2; extra == 'torch'")),
        Dist("huggingface-hub", "0.20.3", ("filelock", "fsspec>=2023.5.0", "requests", "tqdm>=4.42.1")),
        Dist("gradio", "3.41.2", ("huggingface-hub>=0.14.0", "numpy~=1.0", "pillow<11.0,>=8.0")),
        Dist("Pillow", "9.5.0"),
        Dist("numpy", "1.26.2"),
        Dist("safetensors", "0.4.2"),
        Dist("tqdm", "4.66.1"),
        Dist("timm", "0.9.2", ("torch>=1.7", "torchvision", "pyyaml", "huggingface-hub", "safetensors")),
        Dist("open-clip-torch", "2.20.0", ("timm", "huggingface-hub")),
    )


def test_the_hosts_torch_builds_are_pinned_exactly():
    constraints = install.host_constraints(a1111())
    assert constraints.allows("torch", "2.1.2+cu121") and constraints.allows("torchvision", "0.16.2+cu121")
    for other in ("2.1.2", "2.1.2+cpu", "2.14.1"):  # not even the same release in another build
        assert not constraints.allows("torch", other)
    assert not constraints.allows("torchvision", "0.29.1")
    assert any(line.startswith("torch") and "==2.1.2+cu121" in line for line in constraints.lines())


def test_without_torchvision_timm_is_left_out_and_the_matching_build_named():
    installed = cpu_torch_without_torchvision()
    plan = install.plan_install(OURS, installed, install.host_constraints(installed))
    # timm's torchvision requirement must not reach pip (it would replace torch), and timm cannot be imported
    # without torchvision anyway: nothing of it goes in, the rest does
    assert not any("timm" in item or "torch" in item for item in plan.install)
    assert {install.distribution_name(item) for item in plan.install} == {
        install.distribution_name(line) for line in OURS} - {"timm", "numpy"}  # numpy: the host has it
    assert plan.missing_host == ["torchvision"] and "timm left out" in plan.notes[0]
    installed["timm"] = Dist("timm", "1.0.31", ("torchvision",))  # there already, but unusable: still said
    plan = install.plan_install(OURS, installed, install.host_constraints(installed))
    assert plan.missing_host == ["torchvision"] and not any("timm" in note for note in plan.notes)
    message = install.missing_host_message(plan.missing_host, installed)
    assert 'torchvision==0.28.*" --index-url https://download.pytorch.org/whl/cpu' in message
    assert "torch 2.13.0+cpu" in message


def test_upper_bounds_of_installed_packages_become_constraints():
    constraints = install.host_constraints(a1111())
    assert not constraints.allows("huggingface_hub", "2.4.0")  # transformers: huggingface-hub<1.0
    assert constraints.allows("huggingface_hub", "0.23.5")
    assert not constraints.allows("tokenizers", "0.15.0")
    assert not constraints.allows("pillow", "11.0.0")  # gradio: pillow<11.0
    assert "huggingface-hub<1.0,>=0.14.1" in str(constraints.why["huggingface-hub"])
    assert "accelerate" not in constraints.specs  # an extra's requirement does not apply


def test_a_too_old_package_goes_up_by_the_smallest_step_the_host_allows():
    installed = a1111()
    plan = install.plan_install(OURS, installed, install.host_constraints(installed))
    hub_floor = install.lowest_version(install.Requirement(
        next(line for line in OURS if line.startswith("huggingface_hub"))).specifier)
    assert f"huggingface_hub=={hub_floor}" in plan.install  # not the newest: the lowest we support
    timm_floor = install.lowest_version(install.Requirement(
        next(line for line in OURS if line.startswith("timm"))).specifier)
    assert f"timm=={timm_floor}" in plan.install and plan.missing_host == []
    assert not any(item.split("=")[0] in ("pillow", "numpy", "safetensors", "tqdm") for item in plan.install)


def test_a_requirement_the_host_cannot_take_is_left_with_a_message():
    installed = a1111()
    installed["diffusers"] = Dist("diffusers", "0.25.0", ("huggingface-hub<0.21",))
    plan = install.plan_install(OURS, installed, install.host_constraints(installed))
    assert not any(item.startswith("huggingface_hub") for item in plan.install)
    assert any("huggingface_hub 0.20.3 is too old" in note and "diffusers 0.25.0 requires huggingface-hub<0.21"
               in note for note in plan.notes)


def test_an_already_broken_requirement_is_pinned_where_it_is():
    installed = a1111()
    installed["huggingface-hub"] = Dist("huggingface-hub", "2.4.0")  # transformers' bound broken before we came
    constraints = install.host_constraints(installed)
    assert constraints.allows("huggingface_hub", "2.4.0") and not constraints.allows("huggingface_hub", "0.36.0")


def test_webui_pins_are_kept(tmp_path):
    installed = a1111()
    installed["pillow"] = Dist("Pillow", "9.4.0")
    constraints = install.host_constraints(installed, {"pillow": "9.5.0"})
    plan = install.plan_install(["pillow>=9.5"], installed, constraints, pinned={"pillow"})
    assert plan.install == [] and "pinned by the WebUI" in plan.notes[0]
    assert not constraints.allows("pillow", "9.5.0")  # a dependency may not move it either


def test_missing_packages_install_with_our_range_and_satisfied_ones_not_at_all():
    installed = host(Dist("torch", "2.14.1"), Dist("torchvision", "0.29.1", ("torch==2.14.1",)), Dist("tqdm", "4.70"))
    plan = install.plan_install(["tqdm>=4.60", "safetensors>=0.4.2", "torch>=99"], installed,
                                install.host_constraints(installed))
    assert plan.install == ["safetensors>=0.4.2"] and plan.notes == []


def test_matching_torchvision_commands():
    assert 'torchvision==0.29.*" --index-url https://download.pytorch.org/whl/cu130' in \
        install.matching_torchvision("2.14.1+cu130")
    assert install.matching_torchvision("2.9.1").endswith('"torchvision==0.24.*"')
    assert "rocm6.2" in install.matching_torchvision("2.5.1+rocm6.2")


# main(): what reaches pip --------------------------------------------------------------------------------------


@pytest.fixture
def fake_pip(monkeypatch):
    calls = []

    def check_call(args):
        calls.append(list(args))
        constraints = Path(args[args.index("-c") + 1])
        calls.append(constraints.read_text().splitlines())

    monkeypatch.setattr(subprocess, "check_call", check_call)
    monkeypatch.setattr(install, "pip_check", lambda: set())
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    return calls


def test_main_hands_pip_the_constraints_file(fake_pip, monkeypatch, capsys):
    monkeypatch.setattr(install, "installed_distributions", cpu_torch_without_torchvision)
    assert install.main() == 1  # torchvision is missing: said so, and not installed
    (call, constraints) = fake_pip
    assert call[:4] == [sys.executable, "-m", "pip", "install"] and "safetensors>=0.4.2" in call
    assert "torch==2.13.0+cpu" in constraints
    assert not any("torch" in arg or "timm" in arg for arg in call[6:])
    assert "torchvision==0.28.*" in capsys.readouterr().out


def test_main_reports_when_pip_check_got_worse(fake_pip, monkeypatch, capsys):
    monkeypatch.setattr(install, "installed_distributions", a1111)
    checks = iter([set(), {"transformers 4.30.2 has requirement huggingface-hub<1.0,>=0.14.1, but you have "
                           "huggingface-hub 2.4.0."}])
    monkeypatch.setattr(install, "pip_check", lambda: next(checks))
    assert install.main() == 1
    assert "pip check reports new problems" in capsys.readouterr().out


def test_main_with_everything_present_runs_no_pip(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    everything = host(Dist("torch", "2.14.1"), Dist("torchvision", "0.29.1"),
                      *(Dist(install.distribution_name(line), "999") for line in OURS))
    monkeypatch.setattr(install, "installed_distributions", lambda: everything)
    monkeypatch.setattr(subprocess, "check_call", lambda *a, **k: pytest.fail("nothing should be installed"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no pip check needed"))
    assert install.main() == 0
    assert "all requirements are installed" in capsys.readouterr().out


def test_a_failed_pip_run_is_reported_not_raised(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "launch", raising=False)
    monkeypatch.setattr(install, "installed_distributions", a1111)
    monkeypatch.setattr(install, "pip_check", lambda: set())

    def refuse(args):
        raise subprocess.CalledProcessError(1, args)

    monkeypatch.setattr(subprocess, "check_call", refuse)
    assert install.main() == 1
    out = capsys.readouterr().out
    assert "pip could not install them" in out and "huggingface-hub<1.0" in out


def test_versions_that_are_no_pep440_are_skipped_not_fatal():
    installed = host(Dist("torch", "2.6.0-custom build"), Dist("oddball", "1.0", ("numpy>=1.0; python_version>'1'",)),
                     Dist("numpy", "1.26.2"))
    constraints = install.host_constraints(installed)
    assert "torch" not in constraints.specs and constraints.allows("numpy", "1.26.2")
