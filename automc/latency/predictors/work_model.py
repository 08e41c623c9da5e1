"""The work model: a layer kernel not in the store is priced by a per-family (op, shape class,
dtype) non-negative linear fit of time on the work the packed kernels do (padded MACs, staged
input, written output). It extrapolates to sizes calibration never saw, which trees cannot; a
gradient-boosted correction on kernel features on top of it was tried and dropped: on the
validation set it took 100% within ±10% down to 95% (it fits calibration's noise)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from automc.deploy.x86 import AVX512_VNNI, KernelIsa, depthwise_channel_lanes, register_tile, width_tile
from automc.types import KernelSpec


def kernel_family(spec: KernelSpec) -> str:
    """The family a layer kernel's work model is fitted on: op, shape class and dtype.

    A conv reducing over fewer than 4 input channels (a stem on 1 or 3 image channels) is a
    family of its own ("shallow"): its time is staging and output writes, not MACs, and in the
    kxk family four such stems pulled the fit off the rest (5-fold cross-validation over the
    stored kernels, unseen kxk fp32 convs of ≥ 4 input channels: 10.9% time-weighted error
    with them, 7.4% without). Too few to fit, shallow convs take the pooled fit; they are
    rarely compressed, so usually stored."""
    if spec.op == "conv2d":
        if spec.groups == 1 and spec.in_channels < 4:
            return f"conv2d-shallow-{spec.dtype}"
        shape = "dw" if spec.groups > 1 else ("1x1" if spec.kernel_size == 1 else "kxk")
        return f"conv2d-{shape}-{spec.dtype}"
    return f"{spec.op}-{spec.dtype}"


class Work(NamedTuple):
    """The work of a layer kernel as the packed kernels run it (``deploy.x86``), in
    millions (``launches``: a count), each term one the fit prices (ms per unit)."""

    macs: float  # MACs, channels padded to the 16 output lanes (and int8 input channels to 4),
    # columns to the register tile, times the thread imbalance of the parallel loop
    staged_scalar: float  # input elements staged by scalar code (NCHW data: padding, NCHW4c)
    staged_vector: float  # input elements staged 16 channels a vector (blocked data, padded)
    out_nchw: float  # output elements written to NCHW (a scatter from the 16-channel tile;
    # twice with a residual)
    out_blocked: float  # output elements written blocked (whole vectors; twice with a residual)
    loads: float  # vector loads of the reduction loop, times the thread imbalance (see below)
    requantized: float  # output elements rounded, clamped and narrowed to 8 bits
    launches: float  # parallel loops of more than one iteration (the thread pool's fork-join):
    # the kernel's, and its input stage's when that is a loop of its own
    # (eight terms: ``WorkModel.ms`` unrolls its dot product over them)


def work_terms(spec: KernelSpec, threads: int = 2, isa: KernelIsa = AVX512_VNNI) -> Work:
    """``Work`` of a layer kernel on ``threads`` threads, its packed kernel built for ``isa``
    (register tiles, int8 channel groups).

    Loads: per register tile and reduction step, one input broadcast per column and one
    weight vector per channel block (a 16-channel conv, one block a tile, loads nearly twice
    per MAC what a 32-channel one does; the held-out ResNet's 16→16 3×3 convs were predicted
    18% fast without it). Requantized: a demo fp32 1×1 conv writing u8 took 32.5 µs against 26
    writing fp32, and was predicted at 18.5 without it. Imbalance: the parallel loop's
    iterations (rows × channel tiles) split evenly over the threads, so 7 rows on 2 threads
    take as long as 8. The staged terms follow the layouts (``KernelSpec.blocked_in``): from
    NCHW a scalar gather, from blocked data a vector copy that only pads (and shifts s8), and
    none at all for a u8 / fp32 conv that needs no padding."""
    return Work(*_work(spec, threads, isa))


def _work(spec: KernelSpec, threads: int, isa: KernelIsa) -> tuple[float, ...]:
    # ``work_terms`` as a plain tuple, the fields read once: the work model prices every kernel
    # the store lacks this way, most of a fresh candidate's, within a prediction's 100 µs
    op, n, ic, oc, h, w, k, stride, pad, groups, dtype, _, residual, out_dtype, blocked_in, blocked_out, signed_in = spec._values
    oh, ow = spec.out_hw
    g = 1 if dtype == "float32" else (isa.int8_group or 4)
    blocks = -(-oc // 16)
    lanes, steps = blocks * 16, -(-ic // g)
    loads = macs = scalar = vector = stage = 0.0
    chunks = 1  # iterations of the kernel's parallel loop
    padded_in = n * (h + 2 * pad) * (w + 2 * pad)
    if op == "quantize":
        elements = n * ic * h * w
        vector, scalar = (n * -(-ic // 16) * 16 * h * w, 0) if blocked_in else (0, elements)
        out = vector or elements
        # MetaSchedule's schedules run a quantization of more than 64 elements as a parallel
        # loop (measured: 64 elements 0.01 µs, 128 elements 0.88 µs: the fork-join)
        chunks = elements if elements > 64 else 1
    elif op == "dense":
        macs = n * lanes * steps * g
        bt, rt = register_tile(blocks, n, conv=False, isa=isa)
        chunks = blocks // bt * (n // rt)
        loads = chunks * steps * (bt + rt)
        out = n * oc
    else:
        if groups > 1 and (blocked_in or depthwise_channel_lanes(w)):
            # depthwise on channel lanes, one 16-channel vector a tap; a blocked output in
            # bands of up to 8 rows (_packed_schedule._row_band), an NCHW one a group at a time
            macs = n * lanes * oh * ow * k * k
            chunks = n * blocks * (-(-oh // 8) if blocked_out else 1)
            if blocked_in:
                vector = padded_in * blocks * 16
            else:
                scalar = padded_in * ic
        elif groups > 1:  # depthwise on NCHW planes, 16 output columns a vector, a channel a task
            macs = n * ic * oh * -(-ow // 16) * 16 * k * k
            chunks, scalar = n * ic, padded_in * ic
        else:
            tile = width_tile(ow, isa)
            owp = -(-ow // tile) * tile
            macs = n * lanes * oh * owp * steps * g * k * k
            bt, ct = register_tile(blocks, owp, isa=isa)
            chunks = n * blocks // bt * oh
            loads = chunks * (owp // ct) * steps * k * k * (bt + ct)
            # no stage when the kernel reads nothing past the data (conv2d_func's test): a 1×1
            # stride-2 conv reads every other pixel in place (staged as if copied, the 61 stored
            # ones were over-predicted by 58% on 5-fold cross-validation, median 23%)
            unpadded = pad == 0 and (owp - 1) * stride + k <= w
            if blocked_in:  # pads (and shifts s8 data on VNNI); one without padding reads it as
                # it is (fp32, u8 on VNNI, int16 on AVX2: ``deploy.lower.activation_dtype``)
                if not unpadded or (signed_in and g == 4):
                    vector = padded_in * -(-ic // 16) * 16
            elif g > 1 or not unpadded:
                scalar = padded_in * steps * g
            stage = 1.0 if (vector or scalar) else 0.0
        out = n * (lanes if blocked_out else oc) * oh * ow
    imbalance = -(-chunks // threads) * threads / chunks
    out *= 1e-6 * (2 if residual else 1)
    requantized = n * oc * oh * ow if out_dtype != "float32" else 0
    return (macs * imbalance * 1e-6, scalar * 1e-6, vector * 1e-6, 0.0 if blocked_out else out,
            out if blocked_out else 0.0, loads * imbalance * 1e-6, requantized * 1e-6, (chunks > 1) + stage)


# Below this a kernel's relative error is noise, not signal: its time is a fork-join (~0.9 µs
# measured) and the timer's jitter. Weighted by 1/time without it, four probe models' 26 small
# kernels (most 0.04-3 µs: convs on 1×1 and 2×2 planes) pulled the int8 fits far enough to move the
# demo's validation from 86% to 71% within ±10%. Chosen on 5-fold cross-validation over the
# 1256 stored kernels: unseen kernels of ≥ 5 µs, median error 14.7% unfloored, 12.6% at 2 µs,
# 11.9% at 4 µs; those of 2-5 µs 16.4%, 12.4%, 13.7%.
_RELATIVE_FLOOR_MS = 0.004

# Chosen on 5-fold cross-validation over the 1502 stored kernels: the quantizations' median
# error 18.7% with one fit, 11.5% refitted without misses beyond 4×, 6.3% beyond 3×, 3.9% beyond
# 2× (but 2× also drops ordinary small kernels: depthwise int8 mean error -3.5% → -5.3%)
_OUTLIER_RATIO = 3.0


def _fit_work(specs: Sequence[KernelSpec], ms: np.ndarray, threads: int, isa: KernelIsa) -> np.ndarray:
    """ms ≈ c0 + Σ cᵢ · ``work_terms``ᵢ, c ≥ 0, relative errors least squares (each row
    divided by its time, floored at ``_RELATIVE_FLOOR_MS``: a 20 µs kernel counts as much as a
    2 ms one, a 0.1 µs one no more than a 4 µs one)."""
    from scipy.optimize import nnls

    scale = np.maximum(ms, _RELATIVE_FLOOR_MS)
    rows = np.array([[1.0, *work_terms(k, threads, isa)] for k in specs]) / scale[:, None]
    coef, _ = nnls(rows, ms / scale)
    # once more without the kernels that fit misses by more than _OUTLIER_RATIO: a few tasks
    # whose schedules the work terms do not describe (the input quantization of probes on
    # 56-wide planes, 28-194 µs where the others take 1-4) otherwise pull a family's whole fit
    ratio = np.maximum(rows @ coef, 1e-9) * scale / ms
    keep = np.abs(np.log(ratio)) <= np.log(_OUTLIER_RATIO)
    if len(coef) <= keep.sum() < len(keep):
        coef, _ = nnls(rows[keep], (ms / scale)[keep])
    return coef


@dataclass(frozen=True)
class WorkModel:
    """Per-family linear work models (``_fit_work``) for kernels on ``threads`` threads; a
    family with too few measurements uses the fit over all layer kernels. Coefficients are
    plain floats: priced per unseen kernel, numpy's per-call overhead was a fifth of a cold
    prediction."""

    coef: dict[str, tuple[float, ...]]
    pooled: tuple[float, ...]
    threads: int = 2
    isa: KernelIsa = AVX512_VNNI

    def ms(self, spec: KernelSpec) -> float:
        c = self.coef.get(kernel_family(spec), self.pooled)
        t = _work(spec, self.threads, self.isa)  # unrolled: 0.26 µs against sum(map(mul, ...))'s 0.64 (timeit)
        return (c[0] + c[1] * t[0] + c[2] * t[1] + c[3] * t[2] + c[4] * t[3] + c[5] * t[4] + c[6] * t[5]
                + c[7] * t[6] + c[8] * t[7])


_MIN_FAMILY = 12  # measurements before a family gets a fit of its own (9 coefficients)


def fit_work_model(specs: Sequence[KernelSpec], ms: np.ndarray, threads: int = 2,
                   isa: KernelIsa = AVX512_VNNI) -> WorkModel:
    """The ``WorkModel`` of layer kernels ``specs`` measured at ``ms`` (ms each) on ``threads``,
    their packed kernels built for ``isa``."""
    by_family: dict[str, list[int]] = {}
    for i, k in enumerate(specs):
        by_family.setdefault(kernel_family(k), []).append(i)
    coef = {f: tuple(map(float, _fit_work([specs[i] for i in idx], ms[idx], threads, isa)))
            for f, idx in by_family.items() if len(idx) >= _MIN_FAMILY}
    return WorkModel(coef, tuple(map(float, _fit_work(specs, ms, threads, isa))), threads, isa)
