"""Packed kernels on AVX2 (x86-avx2, ``mcpu=core-avx2``): int8 through ``vpmaddwd`` on data and
weights widened to int16, exact; fp32 and depthwise with ymm FMAs, as torch. Real builds, run on
every x86 host this project meets (AVX2 is the floor: Zen 3, Zen 4, Sapphire Rapids)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy.x86 import _cpu, _packed, _packed_schedule
from automc.deploy.x86._cpu import AVX2
from automc.deploy.x86._tiling import register_tile, width_tile
from automc.deploy.build import compile_module, fused_module
from automc.deploy.relax_lowering import lower_to_relax
from automc.profiles import load_profile
from automc.types import Candidate, LayerChoice
from test_packed import _conv_reference, _data, _dtype, _empty_database, _from_blocked, _to_blocked

TARGET = {"kind": "llvm", "mcpu": "core-avx2", "num-cores": 2}


@pytest.fixture
def runs_here(require_cpu):
    require_cpu("avx2", "code built for mcpu=core-avx2")
    require_cpu("fma", "code built for mcpu=core-avx2")


def _build(func, name: str):
    import tvm

    lib = tvm.compile(tvm.IRModule({name: _packed_schedule.schedule_fused(func, AVX2)}), tvm.target.Target(TARGET))
    return lib.mod


def _run(lib_or_func, name: str, args: list[np.ndarray], out_shape, out_dtype) -> np.ndarray:
    """Run a built library (or build a PrimFunc first) on ``args``; returns the output."""
    import tvm

    lib = _build(lib_or_func, name) if isinstance(lib_or_func, tvm.tirx.PrimFunc) else lib_or_func
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype))
    lib[name](*[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


def _avx2_asm(lib) -> str:
    asm = lib.inspect_source("asm")
    assert "zmm" not in asm  # nothing AVX-512
    return asm


def test_targets_take_the_instruction_set_they_have():
    assert _cpu.kernel_isa(load_profile("x86-avx2").target) == AVX2
    assert _cpu.kernel_isa(load_profile("x86-vnni").target) == _cpu.AVX512_VNNI
    assert _cpu.kernel_isa({"kind": "llvm", "mcpu": "skylake-avx512"}) == _cpu.AVX512  # no int8 reduction
    assert _cpu.kernel_isa({"kind": "llvm", "mcpu": "x86-64", "mattr": ["+avx2", "+fma"]}) == AVX2
    assert _cpu.kernel_isa({"kind": "llvm", "mcpu": "x86-64"}) is None
    for name in ("arm-cpu", "cuda-gpu"):
        assert _cpu.kernel_isa(load_profile(name).target) is None, name


def test_avx2_register_tiles_fit_sixteen_ymm_registers():
    """At most 6 16-lane accumulators (12 ymm); rows padded only where no tile of 2 columns
    or more divides them, a narrow tile taking more channel blocks instead."""
    for blocks in (1, 2, 3, 4, 6, 20):
        for columns in (1, 4, 7, 8, 12, 14, 28, 56):
            bt, ct = register_tile(blocks, columns, isa=AVX2)
            assert bt * ct <= 6 and blocks % bt == 0 and columns % ct == 0, (blocks, columns)
    assert register_tile(4, 56, isa=AVX2) == (1, 4) and register_tile(20, 1, conv=False, isa=AVX2) == (5, 1)
    assert register_tile(36, 14, isa=AVX2) == (3, 2) and register_tile(20, 8, isa=AVX2) == (1, 4)
    assert [width_tile(w, AVX2) for w in (56, 14, 7, 24, 1)] == [4, 2, 4, 6, 4]


INT8_CONVS = pytest.mark.parametrize("n,c,hw,oc,k,stride,pad,signed", [
    (1, 64, 14, 64, 3, 1, 1, False),   # the 3x3 workhorse
    (1, 12, 17, 24, 3, 2, 1, False),   # stride 2, odd channels and size
    (2, 41, 9, 40, 1, 1, 0, True),     # s8 data (no shift on AVX2), odd input channels, batch 2
    (1, 24, 8, 96, 1, 2, 0, True),     # stride-2 1x1
    (1, 3, 15, 20, 3, 2, 0, False),    # a stem on 3 channels
])
INT8_DENSES = pytest.mark.parametrize("m,k,n,signed", [(16, 256, 64, False), (3, 37, 50, True), (1, 64, 10, False)])


@functools.cache
def _int8_conv(n, c, hw, oc, k, stride, pad, signed):
    return _build(_packed.conv2d_func((n, c, hw, hw), oc, (k, k), (stride, stride), (pad,) * 4, _dtype(signed),
                                      "conv", isa=AVX2), "conv")


@functools.cache
def _int8_dense(m, k, n, signed):
    return _build(_packed.dense_func(m, k, n, _dtype(signed), "dense", AVX2), "dense")


@INT8_CONVS
def test_int8_conv_builds_to_vpmaddwd_on_any_host(n, c, hw, oc, k, stride, pad, signed):
    asm = _avx2_asm(_int8_conv(n, c, hw, oc, k, stride, pad, signed))
    assert "vpmaddwd" in asm and "vpmaddubsw" not in asm  # (the saturating one)


@INT8_DENSES
def test_int8_dense_builds_to_vpmaddwd_on_any_host(m, k, n, signed):
    asm = _avx2_asm(_int8_dense(m, k, n, signed))
    assert "vpmaddwd" in asm and "vpmaddubsw" not in asm


@INT8_CONVS
@pytest.mark.usefixtures("runs_here")
def test_int8_conv_is_exact(n, c, hw, oc, k, stride, pad, signed):
    rng = np.random.default_rng(0)
    x, w = _data(rng, (n, c, hw, hw), signed), rng.integers(-127, 128, (oc, c, k, k)).astype(np.int8)
    want = _conv_reference(x, w, stride, pad)
    got = _run(_int8_conv(n, c, hw, oc, k, stride, pad, signed), "conv",
               [x, _packed.pack_conv_weight(w, AVX2)], want.shape, np.int32)
    np.testing.assert_array_equal(got, want)


@INT8_DENSES
@pytest.mark.usefixtures("runs_here")
def test_int8_dense_is_exact(m, k, n, signed):
    rng = np.random.default_rng(1)
    x, w = _data(rng, (m, k), signed), rng.integers(-127, 128, (n, k)).astype(np.int8)
    got = _run(_int8_dense(m, k, n, signed), "dense",
               [x, _packed.pack_dense_weight(w, AVX2)], (m, n), np.int32)
    np.testing.assert_array_equal(got, x.astype(np.int64) @ w.T.astype(np.int64))


@pytest.mark.parametrize("extreme,weight", [(255, 127), (255, -127), (-128, -127), (-128, 127)])
@pytest.mark.usefixtures("runs_here")
def test_int8_does_not_saturate_where_vpmaddubsw_would(extreme, weight):
    """Every pair of products at its extreme (2·255·127 = 64770 > 32767, where ``vpmaddubsw``
    saturates): the int16 widening keeps the sums exact."""
    dtype = "uint8" if extreme > 0 else "int8"
    x = np.full((1, 32, 6, 6), extreme, dtype)
    w = np.full((16, 32, 3, 3), weight, np.int8)
    want = _conv_reference(x, w, 1, 1)
    got = _run(_packed.conv2d_func(x.shape, 16, (3, 3), (1, 1), (1,) * 4, dtype, "conv", isa=AVX2), "conv",
               [x, _packed.pack_conv_weight(w, AVX2)], want.shape, np.int32)
    np.testing.assert_array_equal(got, want)
    assert abs(int(got[0, 0, 3, 3])) == 32 * 9 * abs(extreme * weight)
    dense = _run(_packed.dense_func(2, 64, 16, dtype, "dense", AVX2), "dense",
                 [x.reshape(-1)[:128].reshape(2, 64), _packed.pack_dense_weight(w.reshape(16, -1)[:, :64], AVX2)],
                 (2, 16), np.int32)
    assert (dense == 64 * extreme * weight).all()


@pytest.mark.parametrize("blocked_in,blocked_out", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype,c,hw,oc,k,stride,pad", [
    ("uint8", 24, 9, 40, 3, 1, 1),
    ("int8", 20, 8, 36, 1, 1, 0),     # s8 data widened: no compensation argument on AVX2
    ("uint8", 17, 7, 16, 1, 1, 0),    # an unpadded u8 1x1 still stages (widens) its input
    ("int16", 17, 14, 16, 1, 1, 0),   # int16 data (lower.activation_dtype on AVX2): read as it is
    ("int16", 20, 8, 36, 3, 2, 1),    # s8 values as int16, padded stride-2 3x3
    ("float32", 12, 9, 24, 3, 2, 1),
    ("float32", 24, 7, 16, 1, 1, 0),
])
@pytest.mark.usefixtures("runs_here")
def test_blocked_conv_matches_the_nchw_one(blocked_in, blocked_out, dtype, c, hw, oc, k, stride, pad):
    rng = np.random.default_rng(5)
    if dtype == "float32":
        x, w = rng.standard_normal((1, c, hw, hw), np.float32), rng.standard_normal((oc, c, k, k), np.float32)
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad).numpy()
    else:
        x = _data(rng, (1, c, hw, hw), dtype != "uint8").astype(dtype)
        w = rng.integers(-127, 128, (oc, c, k, k)).astype(np.int8)
        want = _conv_reference(x, w, stride, pad)
    func = _packed.conv2d_func(x.shape, oc, (k, k), (stride, stride), (pad,) * 4, dtype, "conv", blocked_in,
                               blocked_out, AVX2)
    if dtype == "int16" and k == 1 and blocked_in:  # nothing to widen or pad
        assert _packed.PACK_BLOCK not in func.script()
    shape = _packed.blocked_shape(want.shape) if blocked_out else want.shape
    got = _run(func, "conv", [_to_blocked(x, rng) if blocked_in else x, _packed.pack_conv_weight(w, AVX2)], shape,
               np.float32 if dtype == "float32" else np.int32)
    got = _from_blocked(got, oc) if blocked_out else got
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)


def test_fp32_kernels_build_to_ymm_fma_on_any_host():
    for lib in (_build(_packed.conv2d_func((1, 16, 14, 14), 24, (3, 3), (1, 1), (1,) * 4, "float32", "conv",
                                           isa=AVX2), "conv"),
                _build(_packed.dense_func(5, 70, 40, "float32", "dense", AVX2), "dense"),
                _build(_packed.depthwise_func((1, 24, 14, 14), (3, 3), (1, 1), (1,) * 4, "float32", "dw"), "dw")):
        asm = _avx2_asm(lib)
        assert "ymm" in asm and "vfmadd" in asm


@pytest.mark.parametrize("n,c,hw,oc,k,stride,pad", [(1, 16, 14, 24, 1, 1, 0), (1, 3, 17, 20, 3, 2, 1),
                                                    (2, 8, 9, 32, 3, 1, 1), (1, 32, 7, 96, 3, 1, 1)])
@pytest.mark.usefixtures("runs_here")
def test_fp32_conv_matches_torch(n, c, hw, oc, k, stride, pad):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((n, c, hw, hw), np.float32), rng.standard_normal((oc, c, k, k), np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad).numpy()
    func = _packed.conv2d_func((n, c, hw, hw), oc, (k, k), (stride, stride), (pad,) * 4, "float32", "conv", isa=AVX2)
    got = _run(func, "conv", [x, _packed.pack_conv_weight(w, AVX2)], want.shape, np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.usefixtures("runs_here")
def test_fp32_dense_matches_numpy(m):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((m, 70), np.float32), rng.standard_normal((100, 70), np.float32)
    got = _run(_packed.dense_func(m, 70, 100, "float32", "dense", AVX2), "dense",
               [x, _packed.pack_dense_weight(w, AVX2)], (m, 100), np.float32)
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "uint8", "int8"])
@pytest.mark.parametrize("c,hw,k,stride,pad,blocked", [(24, 14, 3, 1, 1, False), (8, 15, 3, 2, 1, False),
                                                       (16, 56, 3, 1, 1, False), (8, 33, 3, 2, 1, False),
                                                       (40, 33, 3, 2, 1, True), (24, 7, 3, 1, 1, True)])
@pytest.mark.usefixtures("runs_here")
def test_depthwise_matches_torch_and_is_exact_in_int8(dtype, c, hw, k, stride, pad, blocked):
    rng = np.random.default_rng(4)
    if dtype == "float32":
        x, w = rng.standard_normal((1, c, hw, hw), np.float32), rng.standard_normal((c, 1, k, k), np.float32)
    else:
        x, w = _data(rng, (1, c, hw, hw), dtype == "int8"), rng.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                      stride=stride, padding=pad, groups=c).numpy()
    func = _packed.depthwise_func((1, c, hw, hw), (k, k), (stride, stride), (pad,) * 4, dtype, "dw", blocked, blocked)
    out_shape = _packed.blocked_shape(want.shape) if blocked else want.shape
    got = _run(func, "dw", [_to_blocked(x, rng) if blocked else x, _packed.depthwise_weight(w)], out_shape,
               np.float32 if dtype == "float32" else np.int32)
    got = _from_blocked(got, c) if blocked else got
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.fixture(scope="module")
def avx2_profile():
    return load_profile("x86-avx2")


@pytest.fixture(scope="module", params=["int8", "fp32"])
def demo_build(request, demo, avx2_profile):
    """The demo, uniform int8 (every conv and the classifier) or fp32, lowered and compiled for
    x86-avx2 with an empty tuning database: every conv / dense hand-scheduled."""
    layers = {}
    if request.param == "int8":
        layers = {name: LayerChoice(w_bits=8, a_bits=8) for name, m in demo.model.named_modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    model = apply_candidate(demo.model, Candidate(layers=layers), demo.example_input, demo.calib_batches[:2])
    if layers:
        recalibrate_bn(model, demo.calib_batches[:2])
    model.eval()
    mod = lower_to_relax(model, demo.example_input, avx2_profile)
    return request.param, model, mod, compile_module(mod, avx2_profile, database=_empty_database())


def test_demo_builds_to_avx2_kernels_on_any_host(demo_build, demo):
    dtype, _, mod, executable = demo_build
    tasks = {gv.name_hint: _packed_schedule.is_packed_func(f) for gv, f in fused_module(mod).functions.items()
             if gv.name_hint.startswith("fused_")}
    # every conv and dense task is a packed one: nothing is left for MetaSchedule to tune
    assert all(packed for name, packed in tasks.items() if "conv2d" in name or "matmul" in name)
    fused = [name for name, packed in tasks.items() if packed]
    assert sum(n.startswith("fused_conv2d_dw") for n in fused) >= 5 and any(n.startswith("fused_matmul") for n in fused)
    assert sum("_bb_" in n for n in fused) >= 5  # activations stay blocked between packed convs
    assert not any(len(f.params) == 4 for f in mod.functions.values() if _packed_schedule.is_packed_func(f))  # no shift
    asm = _avx2_asm(executable.mod.imports[0])
    assert asm.count("vfmadd") >= 20
    assert (asm.count("vpmaddwd") >= 20) == (dtype == "int8")


@pytest.mark.usefixtures("runs_here")
def test_demo_runs_avx2_and_matches_torch(demo_build, demo):
    import tvm
    from tvm import relax

    dtype, model, _, executable = demo_build
    x = demo.calib_batches[0][:4]
    vm = relax.VirtualMachine(executable, tvm.cpu())
    for i in range(len(x)):
        got = vm["main"](tvm.runtime.tensor(x[i:i + 1].numpy()))[0].numpy()
        with torch.no_grad():
            want = model(x[i:i + 1]).numpy()
        # int8: the same integer arithmetic as torch's fake quantization, up to float rounding
        tol = 1e-4 if dtype == "fp32" else 0.05
        assert np.abs(got - want).max() <= tol * np.abs(want).max(), (got, want)
        assert got.argmax() == want.argmax()
