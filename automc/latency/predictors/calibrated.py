"""The calibrated predictor: Σ layer kernels + Σ graph ops + overhead. A layer kernel is a fused
task timed inside a whole model (see ``calibrate``): an exact hit from the measurement store,
else the work model's estimate (``work_model``); graph ops and the overheads from
``graph_pricing``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from automc.latency.predictors.graph_pricing import fit_graph_pricing, kernel_records
from automc.latency.predictors.work_model import fit_work_model
from automc.latency.store import MeasurementStore
from automc.types import KernelSpec


class CalibratedPredictor:
    """Store hits + the work model (``fit_work_model``) for layer kernels; graph ops, the
    per-layer call cost and the per-model overhead from ``fit_graph_pricing`` (of the
    ``architecture``'s own wholes when enough are stored, else of all)."""

    source = "calibrated"

    def __init__(self, store: MeasurementStore, architecture: str | None = None):
        self.store = store
        self.pricing = fit_graph_pricing(store, architecture)
        recs = kernel_records(store)
        if len(recs) < 2:
            raise ValueError(f"only {len(recs)} kernel measurements stored; run `automc calibrate` first")
        specs = [KernelSpec.from_dict(r.spec) for r in recs]
        ms = [r.latency_ms for r in recs]
        self.work = fit_work_model(specs, np.array(ms), store.threads, store.isa)
        # keyed by the spec's identity string (``KernelSpec.ident``), never its store key:
        # building that costs ~5 µs, which over ~20-60 kernels would take the whole
        # per-candidate budget of 100 µs
        self._alone: dict[str, float] = {k.ident: t for k, t in zip(specs, ms)}  # stored hits, then estimates
        # stored kernels priced in a model once, here: a search builds one predictor for
        # thousands of candidates, and a candidate's first prediction then only prices what
        # the store lacks (cold, with 1502 kernels stored: 100-106 µs a demo candidate before)
        self._in_model: dict[str, float] = {k.ident: t + self.pricing.layer_ms(k)
                                            for k, t in zip(specs, ms) if k.is_layer}
        self._stored = frozenset(self._alone)
        self.n_measured = len(recs)

    def kernel_ms(self, spec: KernelSpec) -> float:
        """One kernel alone (ms): the stored measurement, else the work model's estimate."""
        self._in_model_ms([spec])
        return self._alone[spec.ident]

    def is_stored(self, spec: KernelSpec) -> bool:
        """Whether the store measured this kernel (else the work model estimates it)."""
        return spec.ident in self._stored

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        return sum(self._in_model_ms(kernels)) + self.pricing.overhead_ms

    def _in_model_ms(self, kernels: Sequence[KernelSpec]) -> list[float]:
        """What each kernel adds to a model's time: alone, plus its in-model cost."""
        # one dict lookup per kernel when cached
        in_model, alone, pricing, work = self._in_model, self._alone, self.pricing, self.work
        out = []
        for k in kernels:
            ident = k.ident
            ms = in_model.get(ident)
            if ms is None:
                if not k.is_layer:  # priced per family, never looked up or estimated
                    ms = alone[ident] = pricing.graph_op_ms(k)
                else:
                    base = alone.get(ident)
                    if base is None:
                        # floored: a degenerate fit must not give 0 ms
                        base = alone[ident] = max(work.ms(k), 1e-4)
                    ms = base + pricing.layer_ms(k)
                in_model[ident] = ms
            out.append(ms)
        return out
