"""Prototype for the next step of issue #3: a 1×1 conv vectorized along *space* instead of output
channels, against the packed kernel automc deploys now (``deploy.x86``), per layer, one run.

Why: in the packed kernels the 16 vector lanes are output channels, so writing NCHW output (and
running its epilogue) touches 16 channel planes per tile, and small-channel 1×1 convs (16–32
input channels, MobileNetV2's and the demo's expands) are bound by that, not by FMAs. Here the
lanes are 16 consecutive pixels of one channel plane (NCHW-contiguous loads and stores), a tile
is 8 output channels × 32 pixels (16 zmm accumulators), weights ``[O/8, C, 8]`` are broadcast
one scalar at a time, and the ReLU6 epilogue runs per tile. Both kernels here are bare (no bias):
packed = ``conv2d_func`` + ``schedule_fused`` (int32/fp32 out, no epilogue), spatial = with its
ReLU6. Only pixel counts divisible by 16 are tried. fp32, 2 threads, medians of 7 runs ≥ 100 ms.

    .venv/bin/python experiments/spatial_1x1.py
"""

from __future__ import annotations

import numpy as np

TARGET = {"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2}
OT, LANES, VECS = 8, 16, 2  # output channels per tile, pixels per vector, vectors per tile
LAYERS = [(16, 96, 112), (32, 16, 112), (16, 64, 32), (24, 144, 56), (144, 24, 56), (32, 192, 28), (192, 32, 28)]


def spatial_func(c: int, oc: int, pixels: int):
    from tvm import te, tirx

    ob = -(-oc // OT)
    data = te.placeholder((1, c, pixels), "float32", "data")
    weight = te.placeholder((ob, c, OT), "float32", "weight")
    rc = te.reduce_axis((0, c), "rc")
    acc = te.compute((1, ob, OT, pixels), lambda b, o, oi, p: te.sum(data[b, rc, p] * weight[o, rc, oi], axis=rc),
                     name="acc")
    zero, six = tirx.const(0, "float32"), tirx.const(6, "float32")
    out = te.compute((1, oc, pixels), lambda b, o, p: tirx.min(tirx.max(acc[b, o // OT, o % OT, p], zero), six),
                     name="out")
    return te.create_prim_func([data, weight, out], index_dtype_override="int64").with_attr("global_symbol", "k")


def spatial_schedule(func, pixels: int):
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    acc = sch.get_sblock("acc")
    b, o, oi, p, rc = sch.get_loops(acc)
    po, pi = sch.split(p, [None, LANES * VECS if pixels % (LANES * VECS) == 0 else LANES])
    pt, lanes = sch.split(pi, [None, LANES])
    sch.reorder(b, o, po, rc, oi, pt, lanes)
    outer = sch.fuse(b, o, po)
    local = sch.cache_write(acc, 0, "global")  # the register tile
    sch.reverse_compute_at(local, outer)
    out = sch.get_sblock("out")
    sch.reverse_compute_at(out, outer)  # the epilogue per tile
    sch.parallel(outer)
    sch.vectorize(sch.get_loops(local)[-1])
    sch.vectorize(lanes)
    sch.unroll(oi)
    sch.unroll(pt)
    init = sch.decompose_reduction(acc, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    try:
        sch.vectorize(sch.get_loops(out)[-1])
    except Exception:  # an epilogue loop that does not vectorize stays scalar
        pass
    return sch.mod["main"]


def time_us(lib, args) -> float:
    import tvm

    evaluator = lib.time_evaluator(lib.entry_name, tvm.cpu(), number=10, repeat=7, min_repeat_ms=100)
    return float(np.median(evaluator(*args).results) * 1e6)


def main() -> None:
    import tvm

    from automc.deploy import x86

    target = tvm.target.Target(TARGET)
    rng = np.random.default_rng(0)
    print("| layer (fp32, 1×1) | packed µs (no epilogue) | spatial µs (ReLU6 fused) | packed ÷ spatial |\n|---|---|---|---|")
    for c, oc, hw in LAYERS:
        pixels = hw * hw
        x = rng.random((1, c, hw, hw), np.float32)
        w = rng.standard_normal((oc, c), np.float32)
        ref = np.clip(np.einsum("oc,cp->op", w, x.reshape(c, pixels)), 0, 6)

        spatial = tvm.tirx.build(spatial_schedule(spatial_func(c, oc, pixels), pixels), target=target)
        ob = -(-oc // OT)
        wp = np.zeros((ob * OT, c), np.float32)
        wp[:oc] = w
        wp = np.ascontiguousarray(wp.reshape(ob, OT, c).transpose(0, 2, 1))
        out = tvm.runtime.tensor(np.zeros((1, oc, pixels), np.float32))
        args = [tvm.runtime.tensor(x.reshape(1, c, pixels)), tvm.runtime.tensor(wp), out]
        spatial(*args)
        np.testing.assert_allclose(out.numpy()[0], ref, rtol=1e-4, atol=1e-4)
        spatial_us = time_us(spatial, args)

        func = x86.conv2d_func((1, c, hw, hw), oc, (1, 1), (1, 1), (0, 0, 0, 0), "float32", "k")
        packed = tvm.compile(tvm.IRModule({"k": x86.schedule_fused(func)}), target).mod
        pargs = [tvm.runtime.tensor(x), tvm.runtime.tensor(x86.pack_conv_weight(w.reshape(oc, c, 1, 1))),
                 tvm.runtime.tensor(np.zeros((1, oc, hw, hw), np.float32))]
        packed_us = time_us(packed, pargs)
        print(f"| {c}→{oc} @ {hw}² | {packed_us:.0f} | {spatial_us:.0f} | {packed_us / spatial_us:.2f} |", flush=True)


if __name__ == "__main__":
    main()
