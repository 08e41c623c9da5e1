"""Graph pricing: graph ops (attention matmuls, norms, softmax, pooling, reshapes, unfused adds:
see ``KernelSpec``), the per-layer call cost and the per-model overhead, as what whole models
measured beyond their layer tasks, priced per family by non-negative least squares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automc.latency.store import Measurement, MeasurementStore
from automc.types import GRAPH_OPS, KernelSpec


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
    """What whole models take beyond their layer kernels timed alone: ``overhead_ms`` per
    model, ``ms_per_layer`` per layer task (the VM's call, argument and allocation work around
    each task, and waking the thread pool), ``ms_per_layer_input`` and ``ms_per_layer_output``
    per million bytes a layer task reads and writes (inside a model a task reads what other
    cores' threads just wrote, and writes lines another core holds; timed alone it rereads
    and rewrites its own), plus, per graph-op family, ms per million elements read and
    written (``bmm``: per million MACs). Fitted by ``fit_graph_pricing``."""

    overhead_ms: float
    ms_per_layer: float
    ms_per_unit: dict[str, float]
    ms_per_layer_input: float = 0.0
    ms_per_layer_output: float = 0.0

    def layer_ms(self, spec: KernelSpec) -> float:
        """What a layer task costs inside a model beyond its time alone (ms)."""
        return (self.ms_per_layer + self.ms_per_layer_input * _layer_input(spec)
                + self.ms_per_layer_output * spec.output_bytes * 1e-6)

    def graph_op_ms(self, spec: KernelSpec) -> float:
        return self.ms_per_unit.get(spec.op, 0.0) * _graph_units(spec)


def _layer_input(spec: KernelSpec) -> float:
    # bytes, not elements: the demo's fp32 model (4-byte inputs) spent 0.086 ms beyond its tasks
    # timed alone, its int8 one (1-byte inputs, more tasks) 0.01; priced per element, the fit
    # put them at -17% and +14%
    return spec.input_bytes * 1e-6


def _graph_units(spec: KernelSpec) -> float:
    return (spec.macs if spec.op == "bmm" else spec.in_channels + spec.out_channels) * 1e-6


# wholes of an architecture enough to price its graph apart: ten coefficients, and the
# validation calibrates 25-29 wholes of each model (baselines + 24 random candidates)
MIN_OWN_WHOLES = 12


def fit_graph_pricing(store: MeasurementStore, architecture: str | None = None) -> GraphPricing:
    """Non-negative least squares over the stored whole models whose layer kernels are all
    stored: whole − Σ layer kernels = overhead + per-layer cost × layers + input and output
    costs × their bytes + Σ_family rate × units of its graph ops, each model's equation
    divided by its time (relative errors). (Measured on the demo's 14 validation candidates,
    their tasks timed: with the output bytes 71% of the wholes within ±5%, 64% without; 93%
    within ±10% either way.)

    Given an ``architecture`` (the uncompressed model's ``calibrate.model_key``) with at least
    ``MIN_OWN_WHOLES`` wholes stored, only those are fitted: what a model adds beyond its
    tasks is its own. Fitted apart on the shipped x86-vnni store, MobileNetV2's 69 wholes
    want 14 µs a model, 2.6 µs a layer and 15 µs a MB read, the demo's 29 wholes 13 µs,
    0.4 µs and 17 µs a MB read; pooled with the transformer's and the 96 probes (single
    blocks of 0.03 ms), the fit gave 1 µs, 0.85 µs and 24 µs a MB written, which priced
    MobileNetV2's own stored wholes 2.9% low at the median (−14% to +11%).

    Families no stored model has keep rate 0: a model full of them (a transformer's softmax,
    say, when only CNNs were calibrated) is under-predicted, which is why the validation
    reports held-out architectures apart.
    """
    from scipy.optimize import nnls

    kernel_ms = {r.key: r.latency_ms for r in kernel_records(store)}
    wholes = [r for r in store.records() if r.kernels]
    own = [r for r in wholes if architecture is not None and r.architecture == architecture]
    rows, ys = [], []
    for r in own if len(own) >= MIN_OWN_WHOLES else wholes:
        specs = [KernelSpec.from_key(k) for k in r.kernels]
        if not all(k.key in kernel_ms for k in specs if k.is_layer):
            continue
        units = dict.fromkeys(GRAPH_OPS, 0.0)
        for k in specs:
            if not k.is_layer:
                units[k.op] += _graph_units(k)
        layers = [k for k in specs if k.is_layer]
        # relative to the model's time: a 9 ms MobileNetV2 must not outweigh thirty 0.3 ms models
        weight = 1.0 / r.latency_ms
        rows.append([weight, weight * len(layers), weight * sum(_layer_input(k) for k in layers),
                     weight * sum(k.output_bytes for k in layers) * 1e-6] + [weight * units[f] for f in GRAPH_OPS])
        ys.append(weight * (r.latency_ms - sum(kernel_ms[k.key] for k in layers)))
    if not rows:
        return GraphPricing(0.0, 0.0, {})
    coef, _ = nnls(np.array(rows), np.array(ys))
    return GraphPricing(float(coef[0]), float(coef[1]), {f: float(c) for f, c in zip(GRAPH_OPS, coef[4:])},
                        ms_per_layer_input=float(coef[2]), ms_per_layer_output=float(coef[3]))
