"""Packed AVX-512 kernels (x86-vnni): real TVM builds for ``mcpu=cascadelake``. On every x86 host
they build and their assembly holds ``vpdpbusd`` (and no saturating ``vpmaddubsw`` fallback);
where the CPU has AVX-512 VNNI they also run: int8 exact, fp32 as torch, depthwise int8 exact."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy.x86 import _cpu, _packed, _packed_schedule
from automc.deploy.build import compile_module, fused_module
from automc.deploy.relax_lowering import lower_to_relax, relax_from_deploy
from automc.profiles import load_profile
from automc.types import Candidate, LayerChoice

TARGET = {"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2}


@pytest.fixture
def runs_here(require_cpu):
    """For tests that execute the built code: a cascadelake build may use any of its features,
    of which AVX-512 VNNI is the one AVX-512 hosts without it (and AVX2-only hosts) lack."""
    require_cpu("avx512_vnni", "code built for mcpu=cascadelake (AVX-512 VNNI)")


def _build(func, name: str):
    import tvm

    lib = tvm.compile(tvm.IRModule({name: _packed_schedule.schedule_fused(func)}), tvm.target.Target(TARGET))
    return lib.mod


def _int8_asm_ok(lib) -> None:
    asm = lib.inspect_source("asm")
    assert "vpdpbusd" in asm
    assert "vpmaddubsw" not in asm  # the wheel's AVX-512 fallback, which saturates


def _conv_reference(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """int64 NCHW conv (groups 1) in numpy: the exact integer result."""
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    oc, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((n, oc, oh, ow), np.int64)
    for dy in range(k):
        for dx in range(k):
            patch = x[:, :, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, dy, dx].astype(np.int64))
    return out


def _dtype(signed: bool) -> str:
    return "int8" if signed else "uint8"


def _data(rng, shape, signed: bool) -> np.ndarray:
    if signed:
        return rng.integers(-127, 128, shape).astype(np.int8)
    return rng.integers(0, 256, shape).astype(np.uint8)


INT8_CONVS = pytest.mark.parametrize("n,c,hw,oc,k,stride,pad,signed", [
    (1, 64, 14, 64, 3, 1, 1, False),   # the 3x3 workhorse
    (1, 12, 17, 24, 3, 2, 1, False),   # stride 2, channels not multiples of 16 / 4, odd size
    (2, 40, 9, 40, 1, 1, 0, True),     # s8 activations, batch 2
    (1, 24, 8, 96, 1, 2, 0, True),     # stride-2 1x1
    (1, 3, 15, 20, 3, 2, 0, False),    # 3 input channels (a stem), no padding
])
INT8_DENSES = pytest.mark.parametrize("m,k,n,signed", [(16, 256, 64, False), (3, 37, 50, True), (1, 64, 10, False)])


@functools.cache
def _int8_conv(n, c, hw, oc, k, stride, pad, signed):
    return _build(_packed.conv2d_func((n, c, hw, hw), oc, (k, k), (stride, stride), (pad,) * 4, _dtype(signed), "conv"), "conv")


@functools.cache
def _int8_dense(m, k, n, signed):
    return _build(_packed.dense_func(m, k, n, _dtype(signed), "dense"), "dense")


@INT8_CONVS
def test_int8_conv_builds_to_vpdpbusd_on_any_host(n, c, hw, oc, k, stride, pad, signed):
    _int8_asm_ok(_int8_conv(n, c, hw, oc, k, stride, pad, signed))


@INT8_DENSES
def test_int8_dense_builds_to_vpdpbusd_on_any_host(m, k, n, signed):
    _int8_asm_ok(_int8_dense(m, k, n, signed))


def test_fp32_kernels_build_to_avx512_fma_on_any_host():
    for lib in (_build(_packed.conv2d_func((1, 16, 14, 14), 24, (3, 3), (1, 1), (1,) * 4, "float32", "conv"), "conv"),
                _build(_packed.dense_func(5, 70, 40, "float32", "dense"), "dense")):
        asm = lib.inspect_source("asm")
        assert "zmm" in asm and "vfmadd" in asm


@INT8_CONVS
@pytest.mark.usefixtures("runs_here")
def test_int8_conv_is_exact(n, c, hw, oc, k, stride, pad, signed):
    import tvm

    rng = np.random.default_rng(0)
    x, w = _data(rng, (n, c, hw, hw), signed), rng.integers(-127, 128, (oc, c, k, k)).astype(np.int8)
    lib = _int8_conv(n, c, hw, oc, k, stride, pad, signed)
    want = _conv_reference(x, w, stride, pad)
    args = [x, _packed.pack_conv_weight(w)] + ([_packed.shift_compensation(w)] if signed else [])
    out = tvm.runtime.tensor(np.zeros(want.shape, np.int32))
    lib["conv"](*[tvm.runtime.tensor(a) for a in args], out)
    np.testing.assert_array_equal(out.numpy(), want)


@INT8_DENSES
@pytest.mark.usefixtures("runs_here")
def test_int8_dense_is_exact(m, k, n, signed):
    import tvm

    rng = np.random.default_rng(1)
    x, w = _data(rng, (m, k), signed), rng.integers(-127, 128, (n, k)).astype(np.int8)
    lib = _int8_dense(m, k, n, signed)
    args = [x, _packed.pack_dense_weight(w)] + ([_packed.shift_compensation(w)] if signed else [])
    out = tvm.runtime.tensor(np.zeros((m, n), np.int32))
    lib["dense"](*[tvm.runtime.tensor(a) for a in args], out)
    np.testing.assert_array_equal(out.numpy(), x.astype(np.int64) @ w.T.astype(np.int64))


def test_only_vnni_targets_take_the_path():
    assert _cpu.has_vnni(TARGET) and _cpu.has_vnni({"kind": "llvm", "mcpu": "skylake-avx512", "mattr": ["+avx512vnni"]})
    assert _cpu.has_avx512({"kind": "llvm", "mcpu": "skylake-avx512"})
    assert not _cpu.has_vnni({"kind": "llvm", "mcpu": "skylake-avx512"})
    for name in ("x86-avx2", "arm-cpu", "cuda-gpu"):
        assert not _cpu.has_vnni(load_profile(name).target), name
        assert not _cpu.has_avx512(load_profile(name).target), name


def _run(func, name: str, args: list[np.ndarray], out_shape, out_dtype) -> np.ndarray:
    import tvm

    lib = _build(func, name)
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype))
    lib[name](*[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


@pytest.mark.parametrize("n,c,hw,oc,k,stride,pad", [
    (1, 16, 14, 24, 1, 1, 0),   # 1x1: reads the data as it is (no padding stage)
    (1, 3, 17, 20, 3, 2, 1),    # a stem: stride 2, odd size, channels not multiples of 16
    (2, 8, 9, 32, 3, 1, 1),     # batch 2, two 16-channel blocks per tile
])
@pytest.mark.usefixtures("runs_here")
def test_fp32_conv_matches_torch(n, c, hw, oc, k, stride, pad):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((n, c, hw, hw), np.float32), rng.standard_normal((oc, c, k, k), np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad).numpy()
    func = _packed.conv2d_func((n, c, hw, hw), oc, (k, k), (stride, stride), (pad,) * 4, "float32", "conv")
    got = _run(func, "conv", [x, _packed.pack_conv_weight(w)], want.shape, np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.usefixtures("runs_here")
def test_fp32_dense_matches_numpy():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 70), np.float32), rng.standard_normal((40, 70), np.float32)
    got = _run(_packed.dense_func(5, 70, 40, "float32", "dense"), "dense", [x, _packed.pack_dense_weight(w)],
               (5, 40), np.float32)
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "uint8", "int8"])
# planes narrower than 16 run 16 channels per vector (24 channels: a padded group); wider ones
# 16 columns per vector, 2 output rows per tile (56: even rows) or 1 (49), stride 2 phase-split (33)
@pytest.mark.parametrize("c,hw,k,stride,pad", [(24, 14, 3, 1, 1), (8, 15, 3, 2, 1), (4, 9, 5, 2, 2),
                                               (16, 56, 3, 1, 1), (4, 49, 5, 1, 2), (8, 33, 3, 2, 1)])
@pytest.mark.usefixtures("runs_here")
def test_depthwise_matches_torch_and_is_exact_in_int8(dtype, c, hw, k, stride, pad):
    rng = np.random.default_rng(4)
    if dtype == "float32":
        x, w = rng.standard_normal((1, c, hw, hw), np.float32), rng.standard_normal((c, 1, k, k), np.float32)
    else:
        x, w = _data(rng, (1, c, hw, hw), dtype == "int8"), rng.integers(-127, 128, (c, 1, k, k)).astype(np.int8)
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                      stride=stride, padding=pad, groups=c).numpy()
    func = _packed.depthwise_func((1, c, hw, hw), (k, k), (stride, stride), (pad,) * 4, dtype, "dw")
    got = _run(func, "dw", [x, _packed.depthwise_weight(w)], want.shape, np.float32 if dtype == "float32" else np.int32)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.mark.parametrize("dtype,extreme", [("uint8", 255), ("int8", -128)])
@pytest.mark.usefixtures("runs_here")
def test_integer_depthwise_is_exact_at_the_largest_sums(dtype, extreme):
    """Summed in float32, the largest integer sums (every input and weight at its extreme, a
    7x7 kernel: 49 · 255 · 127) come out exactly."""
    c, hw, k = 16, 9, 7
    x = np.full((1, c, hw, hw), extreme, dtype)
    w = np.full((c, 1, k, k), -127 if extreme > 0 else 127, np.int8)
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                      padding=3, groups=c).numpy()
    func = _packed.depthwise_func((1, c, hw, hw), (k, k), (1, 1), (3,) * 4, dtype, "dw")
    got = _run(func, "dw", [x, _packed.depthwise_weight(w)], want.shape, np.int32)
    np.testing.assert_array_equal(got, want.astype(np.int64))
    assert abs(int(got.min())) == 49 * abs(extreme) * 127


def _to_blocked(x: np.ndarray, rng) -> np.ndarray:
    """NCHW → ``[N, C/16, H, W, 16]``, the padded channels random (a blocked tensor's padding
    holds whatever its producer computed there)."""
    n, c, h, w = x.shape
    cb = -(-c // 16)
    padded = np.concatenate([x, _data(rng, (n, cb * 16 - c, h, w), x.dtype == np.int8).astype(x.dtype)
                             if x.dtype != np.float32 else rng.standard_normal((n, cb * 16 - c, h, w), np.float32)], 1)
    return np.ascontiguousarray(padded.reshape(n, cb, 16, h, w).transpose(0, 1, 3, 4, 2))


def _from_blocked(x: np.ndarray, c: int) -> np.ndarray:
    n, cb, h, w, _ = x.shape
    return x.transpose(0, 1, 4, 2, 3).reshape(n, cb * 16, h, w)[:, :c]


@pytest.mark.parametrize("blocked_in,blocked_out", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("dtype,c,hw,oc,k,stride,pad", [
    ("uint8", 24, 9, 40, 3, 1, 1),   # channels not multiples of 16, padded 3x3
    ("int8", 20, 8, 36, 1, 1, 0),    # s8 data: the u8 shift, compensation padded with the channels
    ("float32", 12, 9, 24, 3, 2, 1),
    ("float32", 24, 7, 16, 1, 1, 0),  # 1x1 fp32 reads the blocked data with no staging
])
@pytest.mark.usefixtures("runs_here")
def test_blocked_conv_matches_the_nchw_one(blocked_in, blocked_out, dtype, c, hw, oc, k, stride, pad):
    """The blocked layout between packed convs: whatever the padded channels of the input
    hold, the output's real channels are the conv's, exactly for integers."""
    rng = np.random.default_rng(5)
    if dtype == "float32":
        x, w = rng.standard_normal((1, c, hw, hw), np.float32), rng.standard_normal((oc, c, k, k), np.float32)
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=pad).numpy()
        extra, out_dtype = [], np.float32
    else:
        x, w = _data(rng, (1, c, hw, hw), dtype == "int8"), rng.integers(-127, 128, (oc, c, k, k)).astype(np.int8)
        want, out_dtype = _conv_reference(x, w, stride, pad), np.int32
        comp = _packed.shift_compensation(w)
        extra = [np.pad(comp, (0, -(-oc // 16) * 16 - oc)) if blocked_out else comp] if dtype == "int8" else []
    func = _packed.conv2d_func(x.shape, oc, (k, k), (stride, stride), (pad,) * 4, dtype, "conv", blocked_in, blocked_out)
    data = _to_blocked(x, rng) if blocked_in else x
    shape = _packed.blocked_shape(want.shape) if blocked_out else want.shape
    got = _run(func, "conv", [data, _packed.pack_conv_weight(w), *extra], shape, out_dtype)
    got = _from_blocked(got, oc) if blocked_out else got
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
@pytest.mark.parametrize("c,hw,stride", [(24, 56, 1), (40, 33, 2)])  # wide planes: channel lanes on blocked data
@pytest.mark.usefixtures("runs_here")
def test_blocked_depthwise_matches_torch(dtype, c, hw, stride):
    rng = np.random.default_rng(6)
    if dtype == "float32":
        x, w = rng.standard_normal((1, c, hw, hw), np.float32), rng.standard_normal((c, 1, 3, 3), np.float32)
    else:
        x, w = _data(rng, (1, c, hw, hw), False), rng.integers(-127, 128, (c, 1, 3, 3)).astype(np.int8)
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                      stride=stride, padding=1, groups=c).numpy()
    func = _packed.depthwise_func(x.shape, (3, 3), (stride, stride), (1,) * 4, dtype, "dw", True, True)
    got = _run(func, "dw", [_to_blocked(x, rng), _packed.depthwise_weight(w)], _packed.blocked_shape(want.shape),
               np.float32 if dtype == "float32" else np.int32)
    got = _from_blocked(got, c)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_array_equal(got, want.astype(np.int64))


@pytest.fixture(scope="module")
def quantized(demo):
    int8 = LayerChoice(w_bits=8, a_bits=8)
    layers = {"stem.0": int8, "blocks.0.project.0": int8, "blocks.1.expand.0": LayerChoice(8, 8, prune=0.5),
              "blocks.1.dw.0": int8, "blocks.2.expand.0": LayerChoice(8, 8, prune=0.75),
              "blocks.3.expand.0": LayerChoice(4, 8), "head_conv.0": int8, "classifier": int8}
    model = apply_candidate(demo.model, Candidate(layers=layers), demo.example_input, demo.calib_batches[:2])
    recalibrate_bn(model, demo.calib_batches[:2])
    return model.eval()


@pytest.fixture(scope="module")
def vnni_profile():
    return load_profile("x86-vnni").model_copy(update={"target": TARGET})


@pytest.fixture(scope="module")
def quantized_build(quantized, demo, vnni_profile):
    """The quantized demo lowered and compiled for cascadelake (on any x86 host)."""
    mod = lower_to_relax(quantized, demo.example_input, vnni_profile)
    return mod, compile_module(mod, vnni_profile, database=_empty_database())


def test_quantized_demo_builds_to_vnni_on_any_host(quantized_build):
    mod, executable = quantized_build
    vnni = [gv.name_hint for gv, f in mod.functions.items() if _packed_schedule.is_packed_func(f)]
    assert sum(name.startswith("conv2d_packed") for name in vnni) >= 6 and any(n.startswith("matmul") for n in vnni)
    assert any(name.startswith("conv2d_dw_packed") for name in vnni)  # the int8 depthwise conv
    # fused tasks keep the names calibration matches on; one takes s8 input via the u8 shift
    fused = [gv.name_hint for gv, f in fused_module(mod).functions.items() if _packed_schedule.is_packed_func(f)]
    assert any(n.startswith("fused_conv2d_packed") for n in fused) and any(n.startswith("fused_matmul_packed") for n in fused)
    assert any(len(f.params) == 4 for f in mod.functions.values() if _packed_schedule.is_packed_func(f))  # s8: compensation
    # activations stay blocked between packed convs (``_bb``: blocked in and out); the conv
    # feeding the pooling writes NCHW, so no task of its own turns the layout back
    assert sum("_bb_" in n for n in fused) >= 5 and any("_bn_" in n for n in fused)
    assert not any("unblock" in gv.name_hint for gv in mod.functions)
    asm = executable.mod.imports[0].inspect_source("asm")
    assert asm.count("vpdpbusd") >= 7 and "vpmaddubsw" not in asm


@pytest.mark.usefixtures("runs_here")
def test_quantized_demo_runs_vnni_and_matches_torch(quantized_build, quantized, demo, vnni_profile):
    import tvm
    from tvm import relax

    _, executable = quantized_build
    x = demo.calib_batches[0][:1]
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        want = quantized(x).numpy()
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
    assert got.argmax() == want.argmax()
    # the same integer arithmetic as the generic int32 path, up to float rounding in the epilogue
    generic = tvm.compile(relax_from_deploy(*_deploy(quantized, vnni_profile), demo.example_input),
                          tvm.target.Target(TARGET))
    ref = relax.VirtualMachine(generic, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _deploy(model, profile):
    from automc.deploy.lower import deploy_module

    return deploy_module(model, profile)


def _empty_database():
    from automc.deploy._fast_tvm_import import import_meta_schedule

    return import_meta_schedule().database.MemoryDatabase()


def test_block_constant_pads_channels_with_the_last_one():
    """Per-channel epilogue constants broadcast against blocked tensors; their padded channels
    repeat the last value, so even a divide keeps them finite."""
    bias = np.arange(20, dtype=np.float32).reshape(1, 20, 1, 1) + 1
    blocked = _packed.block_constant(bias, 20)
    assert blocked.shape == (1, 2, 1, 1, 16)
    np.testing.assert_array_equal(blocked.reshape(32)[:20], bias.reshape(20))
    assert (blocked.reshape(32)[20:] == 20).all()
    assert _packed.block_constant(np.float32(2.0).reshape(()), 20).shape == ()
    assert _packed.block_constant(np.ones((1, 20, 4, 4), np.float32), 20) is None  # not per-channel
