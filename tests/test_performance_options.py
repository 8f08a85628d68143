"""Opt-in speed settings (int8, torch.compile) and the choices made for the machine (batch size, threads)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from functools import partial

import pytest
import torch

from jtp_core import load_tagger
from jtp_core.cli.main import build_parser
from jtp_core.families.pilot.preprocess import preprocess_image_tensor
from jtp_core.inference.devices import (
    CPU_BATCH_SIZE,
    GPU_MAX_BATCH,
    PRECISIONS,
    cgroup_cpu_quota,
    default_batch_size,
    fit_cpu_threads,
    gpu_batch_size,
    pick_dtype,
)
from jtp_core.inference.quantize import is_quantized
from jtp_core.inference.tagger import Tagger

GIB = 2**30


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(0)
    return {"pixels": torch.rand(6, 3, 384, 384) * 2 - 1}


# ------------------------------------------------------------------------------------------------ int8


def test_int8_quantizes_the_backbone_and_keeps_the_ranking(linear_checkpoint, tiny_tagger, pixels):
    int8 = load_tagger(linear_checkpoint, device="cpu", precision="int8")
    assert is_quantized(int8.model) and not is_quantized(tiny_tagger.model)
    assert type(int8.model.head).__name__ == "SigmoidLinear"  # the head stays float: it sets the scores
    expected, got = tiny_tagger.predict(pixels), int8.predict(pixels)
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))  # same top tag for every image
    assert 0 < (got - expected).abs().max() < 0.05  # changed, but only slightly


def test_int8_on_the_gated_head_returns_probabilities(gated_checkpoint, pixels):
    fp32 = load_tagger(gated_checkpoint, device="cpu")
    int8 = load_tagger(gated_checkpoint, device="cpu", precision="int8")
    assert type(int8.model.head.linear) is torch.nn.Linear  # not quantized
    expected, got = fp32.predict(pixels), int8.predict(pixels)
    assert got.min() >= 0 and got.max() <= 1
    assert (got - expected).abs().max() < 0.05


def test_int8_is_cpu_only_and_reaches_the_cli():
    assert "int8" in PRECISIONS
    assert pick_dtype("int8", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="CPU only"):
        pick_dtype("int8", torch.device("cuda"))
    args = build_parser().parse_args(["tag", "x.png", "--precision", "int8", "--compile"])
    assert args.precision == "int8" and args.compile


def test_loader_node_offers_int8_and_tags_on_the_cpu(comfy, linear_checkpoint, tiny_tagger):
    standin, pack = comfy
    shutil.copytree(linear_checkpoint, standin.models_dir / "jtp" / "TINY_PILOT")
    loader = pack.NODE_CLASS_MAPPINGS["JTPModelLoader"]
    assert "int8" in loader.INPUT_TYPES()["required"]["precision"][0]
    (model,) = loader().load("TINY_PILOT", "auto", "int8")
    tagger = model.ready()
    assert is_quantized(tagger.model) and tagger.device.type == "cpu"
    images = torch.rand(2, 50, 70, 3)
    expected = tiny_tagger.predict_image_tensor(images)
    assert torch.equal(tagger.predict_image_tensor(images).argmax(1), expected.argmax(1))
    with pytest.raises(ValueError, match="CPU only"):
        loader().load("TINY_PILOT", "mps", "int8")


# --------------------------------------------------------------------------------------------- compile


def _tagger_with(tiny_tagger, compile_fn) -> Tagger:
    tagger = dataclasses.replace(tiny_tagger, compile_model=True)
    from jtp_core.inference.compiled import CompiledForward

    tagger._compiled = CompiledForward(tagger.model, compile_fn=compile_fn)
    return tagger


def test_compile_failure_falls_back_to_eager_once(tiny_tagger, pixels, caplog):
    calls = []

    def broken_compiled(_pixels):
        calls.append(1)
        raise RuntimeError("inductor: no C++ compiler found")

    tagger = _tagger_with(tiny_tagger, lambda model: broken_compiled)
    with caplog.at_level(logging.WARNING, logger="jtp_core.inference.compiled"):
        got = tagger.predict(pixels, batch_size=2)
    assert torch.equal(got, tiny_tagger.predict(pixels, batch_size=2))  # same scores, no error
    assert len(calls) == 1  # given up after the first failure, not retried per chunk
    assert "no C++ compiler" in caplog.text and tagger._compiled.failed


def test_compile_error_while_wrapping_also_falls_back(tiny_tagger, pixels):
    def refuse(model):
        raise RuntimeError("torch.compile is not supported on this Python")

    tagger = _tagger_with(tiny_tagger, refuse)
    first_two = {"pixels": pixels["pixels"][:2]}
    assert torch.equal(tagger.predict(first_two), tiny_tagger.predict(first_two))


def test_compiled_forward_is_used_and_kept(tiny_tagger, pixels):
    compiled, calls = [], []

    def fake_compile(model):
        compiled.append(model)

        def optimized(chunk):  # stands in for the optimized module: a different callable, whose result is used
            calls.append(chunk.shape[0])
            return model(chunk) * 0 + 0.25

        return optimized

    tagger = _tagger_with(tiny_tagger, fake_compile)
    got = tagger.predict(pixels, batch_size=2)
    assert compiled == [tiny_tagger.model]  # compiled once, reused for the three chunks
    assert calls == [2, 2, 2]
    assert torch.equal(got, torch.full_like(got, 0.25))  # the scores are the compiled forward's


def _has_cpp_compiler() -> bool:
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def test_real_torch_compile_runs_the_compiled_graph(tiny_tagger, pixels):
    """One real ``torch.compile`` (dynamo traces the tiny model) whose compiled graph answers every chunk.

    The backend is inductor, what ``--compile`` uses, where a C++ compiler is there (CPU inductor needs one:
    the project's machines have g++; about 35 s cold, kernels cached on disk after); without one, aot_eager
    (dynamo + AOTAutograd, no code generation) still proves the compiled forward is the one that runs.
    """
    backend = torch._dynamo.lookup_backend("inductor" if _has_cpp_compiler() else "aot_eager")
    graph_runs = []

    def counting_backend(graph, example_inputs):
        compiled = backend(graph, example_inputs)

        def run(*args):
            graph_runs.append(1)
            return compiled(*args)

        return run

    torch.compiler.reset()
    try:
        tagger = _tagger_with(tiny_tagger, partial(torch.compile, backend=counting_backend))
        first_four = {"pixels": pixels["pixels"][:4]}
        got = tagger.predict(first_four, batch_size=2)
        assert tagger._compiled.failed is None  # no silent fallback to eager
        assert len(graph_runs) == 2  # one traced graph, run for each of the two chunks
        torch.testing.assert_close(got, tiny_tagger.predict(first_four, batch_size=2), rtol=1e-4, atol=1e-5)
    finally:
        torch.compiler.reset()


def test_compile_is_off_by_default(linear_checkpoint):
    assert load_tagger(linear_checkpoint, device="cpu").compile_model is False


# ------------------------------------------------------------------------------------------ batch size


@pytest.mark.parametrize(
    ("free", "dtype", "expected"),
    [
        (75 * GIB, torch.float16, GPU_MAX_BATCH),  # an idle H100: capped
        (2 * GIB, torch.float16, 16),  # half of 2 GiB / 64 MiB per image
        (3 * GIB, torch.float16, 16),  # 24 fit: rounded down to a power of two
        (2 * GIB, torch.float32, 8),  # fp32 activations take twice the room
        (20 * 2**20, torch.float16, 1),  # nearly full: still one image at a time
    ],
)
def test_gpu_batch_size_follows_free_memory(monkeypatch, free, dtype, expected):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * GIB))
    assert gpu_batch_size(torch.device("cuda"), dtype) == expected
    assert default_batch_size(torch.device("cuda"), dtype) == expected


def test_cpu_and_mps_batch_sizes_are_fixed(monkeypatch):
    def no_gpu(device=None):
        raise AssertionError("CPU batch size must not ask CUDA")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_gpu)
    assert default_batch_size(torch.device("cpu")) == CPU_BATCH_SIZE
    assert default_batch_size(torch.device("mps")) == 4


# --------------------------------------------------------------------------------------------- threads


def test_threads_are_lowered_to_the_usable_cpus_only(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        torch.set_num_threads(4)
        monkeypatch.setattr("jtp_core.inference.devices.usable_cpus", lambda: 1)
        assert fit_cpu_threads() == 1
        monkeypatch.setattr("jtp_core.inference.devices.usable_cpus", lambda: 8)
        assert fit_cpu_threads() == 1  # never raised
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        torch.set_num_threads(3)
        monkeypatch.setattr("jtp_core.inference.devices.usable_cpus", lambda: 1)
        assert fit_cpu_threads() == 3  # the user's explicit setting wins
    finally:
        torch.set_num_threads(before)


def test_cgroup_cpu_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert cgroup_cpu_quota(v1) == 2.0
    assert cgroup_cpu_quota(tmp_path / "missing") is None


# ---------------------------------------------------------------------------------------- preprocessing


def test_image_tensors_are_preprocessed_on_the_gpu_only_for_cuda(monkeypatch):
    import jtp_core.families.pilot.family as pilot

    calls = []
    monkeypatch.setattr(pilot, "preprocess_image_batch", lambda *args, **kwargs: calls.append(kwargs) or "gpu")
    images = torch.rand(1, 20, 30, 3)
    assert pilot.PilotPreprocessor().from_image_tensor(images, None, torch.device("cuda")) == {"pixels": "gpu"}
    assert calls == [{"device": torch.device("cuda")}]
    for device in ("cpu", "mps"):  # Pillow itself
        got = pilot.PilotPreprocessor().from_image_tensor(images, None, torch.device(device))["pixels"]
        assert torch.equal(got, preprocess_image_tensor(images, None, 384))
    assert len(calls) == 1
