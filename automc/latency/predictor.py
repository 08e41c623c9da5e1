"""Latency predictors, one protocol: kernels in, milliseconds out.

``CalibratedPredictor``: Σ layer kernels + Σ graph ops + overhead. A layer kernel is a fused
task timed inside a whole model (see ``calibrate``): an exact hit from the measurement store,
else a gradient-boosted regressor on kernel features. Graph ops (attention matmuls, norms,
softmax, pooling, reshapes, unfused adds: see ``KernelSpec``) and the per-model overhead are
what whole models measured beyond their layer tasks, priced per family by non-negative least
squares (``fit_graph_pricing``).
``RooflinePredictor``: the labelled fallback for profiles not calibrated on this host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from automc.latency.store import Measurement, MeasurementStore
from automc.profiles import HardwareProfile
from automc.types import GRAPH_OPS, KernelSpec


class LatencyPredictor(Protocol):
    source: str  # "calibrated" or "uncalibrated"

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        """Latency of a model running ``kernels`` (ms)."""


def kernel_features(spec: KernelSpec) -> list[float]:
    oh, ow = spec.out_hw
    return [
        math.log2(spec.macs + 1), math.log2(spec.bytes_moved + 1),
        1.0 if spec.dtype == "int8" else 0.0,
        1.0 if spec.groups > 1 else 0.0,
        1.0 if spec.op == "dense" else 0.0,
        1.0 if spec.op == "quantize" else 0.0,
        1.0 if spec.residual else 0.0,
        0.0 if spec.out_dtype == "float32" else 1.0,
        float(spec.kernel_size), float(spec.stride),
        math.log2(spec.in_channels), math.log2(spec.out_channels), math.log2(oh * ow),
    ]


def kernel_records(store: MeasurementStore) -> list[Measurement]:
    """The store's kernel measurements of the current ``KernelSpec`` definition (records of an
    older one, whose keys it no longer produces, describe other tasks and are left out)."""
    return [r for r in store.records() if r.spec is not None and _current_key(r.spec) == r.key]


def _current_key(spec: dict) -> str | None:
    try:
        return KernelSpec.from_dict(spec).key
    except TypeError:  # a field this KernelSpec does not have
        return None


@dataclass(frozen=True)
class GraphPricing:
    """What whole models take beyond their layer kernels: ``overhead_ms`` per model (the VM's
    calls and allocations) plus, per graph-op family, ms per million elements read and
    written (``bmm``: per million MACs). Fitted by ``fit_graph_pricing``."""

    overhead_ms: float
    ms_per_unit: dict[str, float]

    def graph_op_ms(self, spec: KernelSpec) -> float:
        return self.ms_per_unit.get(spec.op, 0.0) * _graph_units(spec)


def _graph_units(spec: KernelSpec) -> float:
    return (spec.macs if spec.op == "bmm" else spec.in_channels + spec.out_channels) * 1e-6


def fit_graph_pricing(store: MeasurementStore) -> GraphPricing:
    """Non-negative least squares over the stored whole models whose layer kernels are all
    stored: whole − Σ layer kernels = overhead + Σ_family rate × units of its graph ops.

    Families no stored model has keep rate 0: a model full of them (a transformer's softmax,
    say, when only CNNs were calibrated) is under-predicted, which is why the validation
    reports held-out architectures apart.
    """
    from scipy.optimize import nnls

    kernel_ms = {r.key: r.median_ms for r in kernel_records(store)}
    rows, ys = [], []
    for r in store.records():
        if not r.kernels:
            continue
        specs = [KernelSpec.from_key(k) for k in r.kernels]
        if not all(k.key in kernel_ms for k in specs if k.is_layer):
            continue
        units = dict.fromkeys(GRAPH_OPS, 0.0)
        for k in specs:
            if not k.is_layer:
                units[k.op] += _graph_units(k)
        rows.append([1.0] + [units[f] for f in GRAPH_OPS])
        ys.append(r.median_ms - sum(kernel_ms[k.key] for k in specs if k.is_layer))
    if not rows:
        return GraphPricing(0.0, {})
    coef, _ = nnls(np.array(rows), np.array(ys))
    return GraphPricing(float(coef[0]), {f: float(c) for f, c in zip(GRAPH_OPS, coef[1:])})


@dataclass
class RooflinePredictor:
    """max(compute, memory) time per kernel from the profile's declared peaks. Uncalibrated."""

    profile: HardwareProfile
    source: str = "uncalibrated"

    def kernel_ms(self, spec: KernelSpec) -> float:
        peak = self.profile.peak_gops.get(spec.dtype) or self.profile.peak_gops["float32"]
        compute = 2 * spec.macs / (peak * 1e9)
        memory = spec.bytes_moved / (self.profile.mem_bandwidth_gbs * 1e9)
        return max(compute, memory) * 1e3

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        return sum(self.kernel_ms(k) for k in kernels)


class CalibratedPredictor:
    """Store hits + regression on the store for layer kernels; graph ops and the per-model
    overhead from ``fit_graph_pricing``."""

    source = "calibrated"

    def __init__(self, store: MeasurementStore):
        from sklearn.ensemble import GradientBoostingRegressor

        self.store = store
        self.pricing = fit_graph_pricing(store)
        recs = kernel_records(store)
        if len(recs) < 2:
            raise ValueError(f"only {len(recs)} kernel measurements stored; run `automc calibrate` first")
        x = np.array([kernel_features(KernelSpec.from_dict(r.spec)) for r in recs])
        y = np.log(np.array([r.median_ms for r in recs]))
        self._model = GradientBoostingRegressor(n_estimators=150, max_depth=3, learning_rate=0.1,
                                                subsample=1.0, random_state=0).fit(x, y)
        self._cache: dict[str, float] = {r.key: r.median_ms for r in recs}
        self._by_spec: dict[KernelSpec, float] = {}
        self.n_measured = len(recs)

    def kernel_ms(self, spec: KernelSpec) -> float:
        """One kernel alone (ms): the stored measurement, else the regressor's estimate."""
        return self._kernels_ms([spec])[0]

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        return sum(self._kernels_ms(kernels)) + self.pricing.overhead_ms

    def _kernels_ms(self, kernels: Sequence[KernelSpec]) -> list[float]:
        # Looked up by the (hashable, frozen) spec first: building its string key costs ~5 µs,
        # which over ~20 kernels would take the whole per-candidate budget (DESIGN §7: 100 µs).
        unseen = [k for k in kernels if k not in self._by_spec]
        if unseen:
            for k in unseen:
                if not k.is_layer:  # priced per family, never looked up or regressed
                    self._cache[k.key] = self.pricing.graph_op_ms(k)
            misses = [k for k in unseen if k.key not in self._cache]
            if misses:
                # one regressor call per candidate, not per kernel: sklearn's per-call
                # overhead (~0.7 ms) would otherwise be paid for every unseen kernel
                estimates = np.exp(self._model.predict(np.array([kernel_features(k) for k in misses])))
                self._cache.update((k.key, float(e)) for k, e in zip(misses, estimates))
            self._by_spec.update((k, self._cache[k.key]) for k in unseen)
        return [self._by_spec[k] for k in kernels]
