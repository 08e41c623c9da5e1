"""Graph pricing fitted per architecture vs pooled, on the stored whole models (issue #3).

For all stored wholes together and for each architecture's apart (``Measurement.architecture``;
probes have none), ``fit_graph_pricing`` is fitted and each whole is predicted leave-one-out:
its stored kernels + the pricing fitted on the others. No timing: it reads the profile's store.
Prints a table; writes experiments/graph_pricing_loo.json.

    .venv/bin/python experiments/graph_pricing_loo.py [--profile x86-vnni]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from automc.latency.predictors import GraphPricing, fit_graph_pricing, kernel_records
from automc.latency.store import Measurement, MeasurementStore
from automc.profiles import load_profile
from automc.types import KernelSpec

OUT = Path(__file__).with_name("graph_pricing_loo.json")


class _Subset:
    """The store's kernels with only some of its wholes: what ``fit_graph_pricing`` reads."""

    def __init__(self, records: list[Measurement]):
        self._records = records

    def records(self) -> list[Measurement]:
        return self._records


def whole_ms(pricing: GraphPricing, kernel_ms: dict[str, float], whole: Measurement) -> float:
    """A stored whole predicted from its stored kernels and ``pricing`` (ms)."""
    specs = [KernelSpec.from_key(k) for k in whole.kernels]
    return (sum(kernel_ms[k.key] + pricing.layer_ms(k) for k in specs if k.is_layer)
            + sum(pricing.graph_op_ms(k) for k in specs if not k.is_layer) + pricing.overhead_ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="x86-vnni")
    args = ap.parse_args()
    store = MeasurementStore(load_profile(args.profile))
    kernels = [r for r in store.records() if not r.kernels]
    kernel_ms = {r.key: r.latency_ms for r in kernel_records(store)}
    wholes = [r for r in store.records() if r.kernels and all(
        KernelSpec.from_key(k).key in kernel_ms for k in r.kernels if KernelSpec.from_key(k).is_layer)]
    groups = {"all (pooled)": wholes}
    for arch in sorted({r.architecture or "" for r in wholes}):
        groups[arch or "no architecture (probes)"] = [r for r in wholes if (r.architecture or "") == arch]
    table = {}
    print(f"{'wholes':>28} {'n':>4} {'±10%':>6} {'±5%':>6}  model µs  layer µs  in µs/MB  out µs/MB  graph-op rates")
    for name, group in groups.items():
        errors = np.array([whole_ms(fit_graph_pricing(_Subset(kernels + group[:i] + group[i + 1:])), kernel_ms, r)
                           / r.latency_ms - 1 for i, r in enumerate(group)])
        full = fit_graph_pricing(_Subset(kernels + group))
        rates = {f: round(c, 4) for f, c in full.ms_per_unit.items() if c}
        row = {"n": len(group), "within_10": float(np.mean(np.abs(errors) <= 0.1)),
               "within_5": float(np.mean(np.abs(errors) <= 0.05)), "median_error": float(np.median(errors)),
               "overhead_us": full.overhead_ms * 1e3, "per_layer_us": full.ms_per_layer * 1e3,
               "per_mb_in_us": full.ms_per_layer_input * 1e3, "per_mb_out_us": full.ms_per_layer_output * 1e3,
               "ms_per_unit": rates}
        table[name] = row
        print(f"{name:>28} {len(group):>4} {row['within_10']:>6.0%} {row['within_5']:>6.0%}  {row['overhead_us']:>8.1f}"
              f"  {row['per_layer_us']:>8.2f}  {row['per_mb_in_us']:>8.1f}  {row['per_mb_out_us']:>9.1f}  {rates}")
    OUT.write_text(json.dumps({"profile": args.profile, "host": store.device, "table": table}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
