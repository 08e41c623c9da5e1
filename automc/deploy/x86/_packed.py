"""Hand-scheduled conv2d / depthwise / dense kernels for x86 targets with AVX-512 or AVX2 (the
instruction set each uses: ``_cpu.KernelIsa``): fp32 (FMA) and int8 (AVX-512 VNNI ``vpdpbusd``,
or AVX2 ``vpmaddwd`` on data widened to int16).

Why this exists: TVM 0.27's default CPU lowering does no scheduling (naive loops), MetaSchedule
needs ~150 s per kernel for a good schedule, and its int8 ``conv2d``/``matmul`` with
``out_dtype="int32"`` is scalar; the wheel's ``dot_16x4_vnni`` intrinsic does not even pass
LLVM 22 verification. Here each layer is one TIR function (``[M, K]`` → ``[M, N]``
for dense; for convs NCHW or, between packed convs, the blocked ``[N, C/16, H, W, 16]`` in and
out: see ``blocked_shape`` and ``_blocked``; the same 16 channels on every x86 target,
a 16-lane vector being two ymm registers on AVX2) with three stages:

* ``packed_input``: zero padding as its own stage (skipped for an fp32 conv that pads nothing);
  for int8 also into groups of g channels (NCHW4c for VNNI, with s8→u8 (+128); channel pairs
  widened to int16 for AVX2) (from blocked data a copy, from NCHW a transpose); for depthwise
  on NCHW data it is computed per channel (plane in cache), rows split by stride phase so
  strided convs read contiguous vectors; on blocked data (or planes narrower than 16) 16
  channels a vector, a band of rows at a time.
* the reduction (``conv2d_packed`` / ``matmul_packed`` / ``dwconv_packed``): 16 output channels
  innermost on weights packed once, as constants (conv ``[OC/16, IC/g, KH, KW, 16, g]``, dense
  ``[N/16, K/g, 16, g]``, g = 4 for VNNI, 2 for AVX2 int8, 1 for fp32; zero-padded, so any
  channel count works), a register tile of accumulators (``_tiling.register_tile``);
  depthwise vectorizes 16 output columns (2 rows a tile on wide planes) or, on narrow planes,
  16 channels.
* ``packed_output``: NCHW or blocked; for s8 data on VNNI less ``128·Σw`` per channel, so
  int8 results stay exact.

Relax fuses each function with its epilogue (FuseOps/FuseTIR: bias, activation, residual add,
requantize, the next layer's quantize); ``_packed_schedule.schedule_fused`` then schedules the
fused function (tiling, vectorize or tensorize, epilogue computed at the tile) and marks it
scheduled, so MetaSchedule never tunes it: zero tuning cost for every shape, and timings that
do not depend on how lucky a search was. ``build.tune_modules`` skips these tasks;
``build.compile_module`` compiles through ``_packed_schedule.compile_relax``. Grouped
(non-depthwise) and dilated convs stay on the generic path (MetaSchedule); figures are in
experiments/README.md.
"""

from __future__ import annotations

import numpy as np

from automc.deploy.x86._cpu import AVX512_VNNI, KernelIsa
from automc.deploy.x86._tiling import width_tile

CONV_BLOCK = "conv2d_packed"
DENSE_BLOCK = "matmul_packed"
DW_BLOCK = "dwconv_packed"
PACK_BLOCK = "packed_input"
UNPACK_BLOCK = "packed_output"
_DW_LANES = 16  # output columns per depthwise vector (fp32 / int32 lanes of a zmm register)
BLOCK = 16  # channels innermost in the blocked layout between packed kernels (``blocked_shape``)
_SHIFT = 128  # s8 activations run as u8 = s8 + 128

def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _group(dtype: str, isa: KernelIsa) -> int:
    """Input channels one weight lane reduces: 1 for fp32 (FMA), ``isa.int8_group`` for int8
    (4: VNNI ``vpdpbusd``; 2: AVX2 ``vpmaddwd``)."""
    if dtype == "float32":
        return 1
    if isa.int8_group is None:
        raise ValueError(f"no packed int8 conv / dense on {isa.name}")
    return isa.int8_group


def _weight_dtype(dtype: str, g: int) -> str:
    """The packed weights' dtype: the data's for fp32, s8 for VNNI, int16 (widened s8) for AVX2."""
    return {1: dtype, 4: "int8", 2: "int16"}[g]


def _stage_dtype(g: int) -> str:
    """What integer data is staged as for the reduction: u8 (s8 shifted) for VNNI, int16 for AVX2."""
    return "uint8" if g == 4 else "int16"


def pack_conv_weight(w: np.ndarray, isa: KernelIsa = AVX512_VNNI) -> np.ndarray:
    """OIHW weights → ``[ceil(O/16), ceil(I/g), KH, KW, 16, g]``, zero-padded; g = 1 for
    float32, for int8 ``isa.int8_group`` (s8 for VNNI, widened to int16 for AVX2)."""
    o, i, kh, kw = w.shape
    g = _group(str(w.dtype), isa)
    ob, ib = _ceil(o, 16), _ceil(i, g)
    padded = np.zeros((ob * 16, ib * g, kh, kw), _weight_dtype(str(w.dtype), g))
    padded[:o, :i] = w
    return np.ascontiguousarray(padded.reshape(ob, 16, ib, g, kh, kw).transpose(0, 2, 4, 5, 1, 3))


def pack_dense_weight(w: np.ndarray, isa: KernelIsa = AVX512_VNNI) -> np.ndarray:
    """``[N, K]`` weights (torch Linear layout) → ``[ceil(N/16), ceil(K/g), 16, g]``, g and
    dtype as for ``pack_conv_weight``."""
    n, k = w.shape
    g = _group(str(w.dtype), isa)
    nb, kb = _ceil(n, 16), _ceil(k, g)
    padded = np.zeros((nb * 16, kb * g), _weight_dtype(str(w.dtype), g))
    padded[:n, :k] = w
    return np.ascontiguousarray(padded.reshape(nb, 16, kb, g).transpose(0, 2, 1, 3))


def shift_compensation(wq: np.ndarray) -> np.ndarray:
    """``128·Σw`` per output channel (int32): what the u8 shift of s8 activations adds."""
    return (_SHIFT * wq.reshape(wq.shape[0], -1).astype(np.int64).sum(axis=1)).astype(np.int32)


def _finish(func, name: str):
    # op_pattern 4 = kOutEWiseFusable: FuseOps fuses the float epilogue after it, as for conv2d
    return func.with_attr({"op_pattern": 4, "global_symbol": name})


def _acc_dtype(dtype: str) -> str:
    return "float32" if dtype == "float32" else "int32"


def blocked_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    """The blocked layout of an NCHW tensor: ``[N, ceil(C/16), H, W, 16]``, 16 channels
    innermost (the packed kernels' output lanes); the channels past C hold any finite value
    (zero weights read them)."""
    n, c, h, w = shape
    return n, _ceil(c, BLOCK), h, w, BLOCK


def _element(data, b, c, y, x):
    """``data`` at NCHW index (b, c, y, x), whether ``data`` is NCHW or blocked."""
    return data[b, c // BLOCK, y, x, c % BLOCK] if len(data.shape) == 5 else data[b, c, y, x]


def _padded_reader(data, top: int, left: int, fill, convert=lambda value: value):
    """``(b, c, y, x) → convert(data)`` at (y - top, x - left), ``fill`` outside (the conv's
    zero padding); ``data`` NCHW or blocked (``blocked_shape``)."""
    from tvm import tirx

    h, w = (int(d) for d in data.shape[2:4])

    def read(b, c, y, x):
        yy, xx = y - top, x - left
        value = convert(_element(data, b, c, yy, xx))
        return tirx.if_then_else(tirx.all(yy >= 0, yy < h, xx >= 0, xx < w), value, fill)
    return read


def conv2d_func(data_shape: tuple[int, int, int, int], out_channels: int, kernel: tuple[int, int],
                strides: tuple[int, int], padding: tuple[int, int, int, int], dtype: str, name: str,
                blocked_in: bool = False, blocked_out: bool = False, isa: KernelIsa = AVX512_VNNI):
    """TIR of an NCHW conv (groups=1, dilation 1), on packed weights, 16 output channels
    innermost. ``dtype`` is the data's: ``float32`` (→ float32, FMA) or ``uint8`` / ``int8``
    (→ int32: with VNNI on NCHW4c u8 data, for int8 data with ``shift_compensation`` as the
    third argument; on AVX2 on data widened to int16 in channel pairs), or on AVX2 ``int16``
    holding u8 / s8 values (``lower.activation_dtype``: nothing to widen).
    ``data_shape`` is NCHW; the data arrives in ``blocked_shape`` with ``blocked_in``, and the
    output leaves in it with ``blocked_out`` (else NCHW).

    Arguments: data, packed weight (``pack_conv_weight``) [, compensation]. ``padding`` is
    (top, left, bottom, right) in pixels."""
    from tvm import te, tirx

    n, c, h, w = data_shape
    kh, kw = kernel
    sh, sw = strides
    top, left, bottom, right = padding
    g = _group(dtype, isa)
    ib, ob = _ceil(c, g), _ceil(out_channels, 16)
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1
    owp = _ceil(ow, width_tile(ow, isa)) * width_tile(ow, isa)
    # the padded input rows/columns the kernel reads (padded output columns read zeros)
    hp, wp = (oh - 1) * sh + kh, (owp - 1) * sw + kw
    data = te.placeholder(blocked_shape(data_shape) if blocked_in else data_shape, dtype, "data")
    weight = te.placeholder((ob, ib, kh, kw, 16, g), _weight_dtype(dtype, g), "weight")
    rc, ry, rx = (te.reduce_axis((0, e), nm) for e, nm in ((ib, "rc"), (kh, "ry"), (kw, "rx")))
    if g == 1:
        if top == left == 0 and hp <= h and wp <= w:  # nothing to pad (e.g. 1x1): read the data as it is
            def packed_at(b, ch, y, x):
                return _element(data, b, ch, y, x)
        else:
            shape = blocked_shape((n, c, hp, wp)) if blocked_in else (n, c, hp, wp)
            read = _padded_reader(data, top, left, tirx.const(0, dtype))
            if blocked_in:
                packed = te.compute(shape, lambda b, cb, y, x, c16: read(b, cb * BLOCK + c16, y, x), name=PACK_BLOCK)
            else:
                packed = te.compute(shape, read, name=PACK_BLOCK)

            def packed_at(b, ch, y, x):
                return _element(packed, b, ch, y, x)
        acc = te.compute((n, ob, oh, owp, 16), lambda b, o, y, x, o16: te.sum(
            packed_at(b, rc, y * sh + ry, x * sw + rx) * weight[o, rc, ry, rx, o16, 0], axis=[rc, ry, rx]),
            name=CONV_BLOCK)
    else:
        staged = _integer_stager(dtype, g)
        read = _padded_reader(data, top, left, tirx.const(0, dtype))

        if blocked_in:
            # groups of g channels are contiguous in the blocked layout already: the stage only
            # pads, shifts or widens, a vector a pixel, and u8 data that needs none of it is read
            # as it is (channels past c hold finite values the zero weights cancel)
            if dtype == _stage_dtype(g) and top == left == 0 and hp <= h and wp <= w:
                packed = data
            else:
                packed = te.compute(blocked_shape((n, c, hp, wp)), lambda b, cb, y, x, c16: staged(
                    read(b, cb * BLOCK + c16, y, x)), name=PACK_BLOCK)

            def group(b, gi, y, x, r4):
                return packed[b, gi // (BLOCK // g), y, x, gi % (BLOCK // g) * g + r4]
        else:
            def pack(b, cb, y, x, cg):
                ic = cb * g + cg
                # padding holds the zero point: 0, which is 128 once s8 data is shifted
                return tirx.if_then_else(ic < c, staged(read(b, tirx.min(ic, c - 1), y, x)),
                                         tirx.const(0, _stage_dtype(g)))

            packed = te.compute((n, ib, hp, wp, g), pack, name=PACK_BLOCK)

            def group(b, gi, y, x, r4):
                return packed[b, gi, y, x, r4]
        r4 = te.reduce_axis((0, g), "r4")
        acc = te.compute(
            (n, ob, oh, owp, 16),
            lambda b, o, y, x, o16: te.sum(group(b, rc, y * sh + ry, x * sw + rx, r4).astype("int32")
                                           * weight[o, rc, ry, rx, o16, r4].astype("int32"), axis=[rc, ry, rx, r4]),
            name=CONV_BLOCK)
    shifted = dtype == "int8" and g == 4
    if blocked_out:
        return _unpack([data, weight], acc, (n, ob, oh, ow, BLOCK), shifted,
                       lambda acc, b, o, y, x, o16: acc[b, o, y, x, o16], name, channel_of=lambda i: i[1] * BLOCK + i[4])
    return _unpack([data, weight], acc, (n, out_channels, oh, ow), shifted,
                   lambda acc, b, o, y, x: acc[b, o // 16, y, x, o % 16], name)


def _integer_stager(dtype: str, g: int):
    """``value → staged value`` of integer data for the reduction: s8 shifted to u8 (VNNI),
    u8 as it is; widened to int16 for AVX2."""
    if g == 2:
        return lambda value: value.astype("int16")
    if dtype == "int8":
        return lambda value: (value.astype("int32") + _SHIFT).astype("uint8")
    return lambda value: value


def _unpack(args: list, acc, out_shape: tuple[int, ...], shifted: bool, read, name: str, channel_of=None):
    """The function's output stage: ``read(acc, *index)``, less the shift compensation (a
    third argument, indexed by ``channel_of(index)``: by default the NCHW / ``[M, N]`` channel)
    for shifted s8 data; returns the finished PrimFunc."""
    from tvm import te

    if shifted:
        if channel_of is None:
            channel = 1 if len(out_shape) == 4 else len(out_shape) - 1
            comp_len = out_shape[channel]

            def channel_of(i):
                return i[channel]
        else:
            comp_len = out_shape[1] * BLOCK
        comp = te.placeholder((comp_len,), "int32", "compensation")
        args.append(comp)
        out = te.compute(out_shape, lambda *i: read(acc, *i) - comp[channel_of(i)], name=UNPACK_BLOCK)
    else:
        out = te.compute(out_shape, lambda *i: read(acc, *i), name=UNPACK_BLOCK)
    return _finish(te.create_prim_func([*args, out], index_dtype_override="int64"), name)


def depthwise_func(data_shape: tuple[int, int, int, int], kernel: tuple[int, int], strides: tuple[int, int],
                   padding: tuple[int, int, int, int], dtype: str, name: str,
                   blocked_in: bool = False, blocked_out: bool = False):
    """TIR of a depthwise NCHW conv (groups = channels, multiplier 1, dilation 1):
    float32 → float32, or u8 / s8 data × s8 weights → int32, exactly. Data in
    ``blocked_shape`` with ``blocked_in``, output in it with ``blocked_out`` (channel lanes
    only: see ``depthwise_channel_lanes``), else NCHW.

    A depthwise conv has no channel reduction for ``vpdpbusd``, so integer data is staged as
    float32 and multiplied by the float32 copy of the s8 weights (``depthwise_weight``) with
    FMAs: every product and partial sum is an integer below 2^24 (|255 · 128| per tap, at most
    ``_DW_MAX_TAPS`` taps), which float32 holds exactly, and the sum is cast to int32 at the
    end. 16-lane int32 multiplies (``vpmulld``) with a widening load per tap were ~1.6× slower
    than fp32 (MobileNetV2's depthwise convs 4.3 vs 2.7 ms on TVM's default thread pool; one
    96×112² stride-2 layer on 2 threads now 268 µs u8 vs 320 µs fp32).

    On NCHW data with wide planes, vectorized along output columns: the padded input is stored
    phase-split by the stride (``[N, C, HP, stride, WP/stride]``), so a stride-2 conv reads
    contiguous vectors too (a throwaway prototype measured 0.67 vs 1.39 ms on 96×112² against
    strided reads). Arguments: data, weight ``[C, KH, KW]``."""
    from tvm import te, tirx

    n, c, h, w = data_shape
    kh, kw = kernel
    sh, sw = strides
    top, _left, bottom, _right = padding
    oh, ow = (h + top + bottom - kh) // sh + 1, (w + padding[1] + padding[3] - kw) // sw + 1
    owp = _ceil(ow, _DW_LANES) * _DW_LANES
    hp, wq = (oh - 1) * sh + kh, owp + (kw - 1) // sw
    if kh * kw > _DW_MAX_TAPS:
        raise ValueError(f"a {kh}x{kw} depthwise kernel has more than {_DW_MAX_TAPS} taps: its integer sums "
                         "could exceed what float32 holds exactly")
    data = te.placeholder(blocked_shape(data_shape) if blocked_in else data_shape, dtype, "data")
    weight = te.placeholder((_ceil(c, _DW_LANES) * _DW_LANES, kh, kw), "float32", "weight")
    # the cast inside the guard: the padding pattern decompose_padding splits into border and copy
    read = _padded_reader(data, top, padding[1], tirx.const(0, "float32"), lambda v: v.astype("float32"))
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    out_dtype = _acc_dtype(dtype)
    if blocked_in or depthwise_channel_lanes(w):
        cb = _ceil(c, _DW_LANES)
        hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
        if blocked_in:  # channels past c are finite; their weights are zero
            packed = te.compute((n, cb, hp, wp, _DW_LANES), lambda b, o, y, x, c16: read(
                b, o * _DW_LANES + c16, y, x), name=PACK_BLOCK)
        else:
            packed = te.compute((n, cb, hp, wp, _DW_LANES), lambda b, o, y, x, c16: tirx.if_then_else(
                o * _DW_LANES + c16 < c, read(b, tirx.min(o * _DW_LANES + c16, c - 1), y, x),
                tirx.const(0, "float32")), name=PACK_BLOCK)
        acc = te.compute((n, cb, oh, ow, _DW_LANES), lambda b, o, y, x, c16: te.sum(
            packed[b, o, y * sh + ry, x * sw + rx, c16] * weight[o * _DW_LANES + c16, ry, rx], axis=[ry, rx]),
            name=DW_BLOCK)
        if blocked_out:
            return _unpack([data, weight], acc, (n, cb, oh, ow, BLOCK), False,
                           lambda acc, *i: acc[i].astype(out_dtype), name)
        return _unpack([data, weight], acc, (n, c, oh, ow), False, lambda acc, b, ch, y, x: acc[
            b, ch // _DW_LANES, y, x, ch % _DW_LANES].astype(out_dtype), name)
    if blocked_out:
        raise ValueError("a column-vectorized depthwise conv (NCHW input on a wide plane) writes NCHW only")
    packed = te.compute((n, c, hp, sw, wq), lambda b, ch, y, ph, j: read(b, ch, y, j * sw + ph), name=PACK_BLOCK)
    acc = te.compute((n, c, oh, owp), lambda b, ch, y, x: te.sum(
        packed[b, ch, y * sh + ry, rx % sw, x + rx // sw] * weight[ch, ry, rx], axis=[ry, rx]), name=DW_BLOCK)
    return _unpack([data, weight], acc, (n, c, oh, ow), False,
                   lambda acc, b, ch, y, x: acc[b, ch, y, x].astype(out_dtype), name)


def writes_blocked(depthwise: bool, in_width: int, blocked_in: bool) -> bool:
    """Whether a packed conv's output can leave in the blocked layout: every groups=1 conv, a
    depthwise one when it runs on channel lanes."""
    return not depthwise or blocked_in or depthwise_channel_lanes(in_width)


def block_constant(value: np.ndarray, channels: int) -> np.ndarray | None:
    """A per-channel constant (``[1, C, 1, 1]`` or ``[C, 1, 1]``, C = ``channels``) or a
    scalar, as it broadcasts against a blocked tensor; the padded channels repeat the last one
    (finite under any elementwise op, a divide too). None for any other shape."""
    if value.size == 1:
        return value.reshape(()) if value.ndim else value
    if value.shape not in ((1, channels, 1, 1), (channels, 1, 1)):
        return None
    flat = value.reshape(channels)
    padded = np.concatenate([flat, np.repeat(flat[-1:], _ceil(channels, BLOCK) * BLOCK - channels)])
    return np.ascontiguousarray(padded.reshape(1, -1, 1, 1, BLOCK))


def depthwise_channel_lanes(in_width: int) -> bool:
    """Whether a depthwise conv's vector lanes are 16 channels rather than 16 output columns:
    on planes narrower than a vector most column lanes would compute padding. Measured on
    MobileNetV2's int8 layers (2 threads): 960×7² 67 → 27 µs, 384×14² 48 → 40, 576×14²
    stride 2 50 → 37; a 28-wide stride-2 plane (14 out) is slower that way (32 → 46 µs), so
    the rule is on the input width."""
    return in_width < DW_CHANNEL_LANES_BELOW


DW_CHANNEL_LANES_BELOW = 16


_DW_MAX_TAPS = (1 << 24) // (255 * 128)  # integer sums stay exact in float32 (514 taps)


def depthwise_weight(wt: np.ndarray) -> np.ndarray:
    """A depthwise conv's ``[C, 1, KH, KW]`` weights (float32, or s8 for an integer layer) as
    ``depthwise_func`` takes them: ``[C', KH, KW]`` float32 (s8 values are exact in it), C'
    = C zero-padded to a multiple of 16 (whole vectors of channels)."""
    c, _, kh, kw = wt.shape
    padded = np.zeros((_ceil(c, _DW_LANES) * _DW_LANES, kh, kw), np.float32)
    padded[:c] = wt.reshape(c, kh, kw)
    return padded


def dense_func(m: int, k: int, n: int, dtype: str, name: str, isa: KernelIsa = AVX512_VNNI):
    """TIR of ``[M, K]`` data × packed weights (``pack_dense_weight``) → ``[M, N]``: float32 →
    float32, or u8 / s8 → int32 (VNNI or AVX2: arguments as ``conv2d_func``)."""
    from tvm import te, tirx

    g = _group(dtype, isa)
    kb, nb = _ceil(k, g), _ceil(n, 16)
    data = te.placeholder((m, k), dtype, "data")
    weight = te.placeholder((nb, kb, 16, g), _weight_dtype(dtype, g), "weight")
    rk = te.reduce_axis((0, kb), "rk")
    if g == 1:
        acc = te.compute((m, nb, 16), lambda i, j, j16: te.sum(data[i, rk] * weight[j, rk, j16, 0], axis=rk),
                         name=DENSE_BLOCK)
    else:
        staged = _integer_stager(dtype, g)

        def pack(i, j):
            return tirx.if_then_else(j < k, staged(data[i, tirx.min(j, k - 1)]), tirx.const(0, _stage_dtype(g)))

        packed = te.compute((m, kb * g), pack, name=PACK_BLOCK)
        r4 = te.reduce_axis((0, g), "r4")
        acc = te.compute((m, nb, 16), lambda i, j, j16: te.sum(
            packed[i, rk * g + r4].astype("int32") * weight[j, rk, j16, r4].astype("int32"), axis=[rk, r4]),
            name=DENSE_BLOCK)
    return _unpack([data, weight], acc, (m, n), dtype == "int8" and g == 4,
                   lambda acc, i, j: acc[i, j // 16, j % 16], name)
