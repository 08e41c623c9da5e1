"""Where the held-out architecture's latency error comes from (issue #3): its kernels or its graph.

The validation's held-out ResNet (``latency_validation.py --held-out resnet-small``) comes out
over-predicted by ~5-7% at the median when the host runs at calibration's speed (runs P, Q).
This splits that error. The validation's fresh candidates (same ``--seed``) of the held-out
model and of a calibrated one (the demo, whose kernels are mostly stored) are compressed,
compiled and measured interleaved, every fused task timed alone as calibration times it
(``calibrate.measure_model``). The calibrated model's stored kernels, timed again, give the
host's speed now against calibration's (the median ratio now / stored); the held-out model's
kernels, priced by the predictor (the work model: none of them is stored), are compared
with their times divided by that ratio, per kernel family, and each candidate's whole with
Σ its tasks + what the graph pricing adds. Timing: run it alone on the CPU (~10 min).
Prints a table; writes experiments/heldout_kernel_bias.json.

    .venv/bin/python experiments/heldout_kernel_bias.py --held-out resnet-small --calibrated demo-cnn \
        --seed 17 --per-model 14
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import automc.api as api
from automc.compress import apply_candidate
from automc.deploy.lower import kernel_specs
from automc.latency.calibrate import measure_model, predictor_for
from automc.latency.predictors import kernel_family, kernel_records
from automc.latency.store import MeasurementStore
from automc.model.zoo import load_builtin
from automc.profiles import load_profile
from automc.search.seeds import calibration_candidates

OUT = Path(__file__).with_name("heldout_kernel_bias.json")


def _fresh_models(name: str, profile, seed: int, n: int):
    b = load_builtin(name, verbose=False)
    ctx = api.prepare(b.model, b.example_input, b.evaluate, profile, "default", b.calib_batches)
    _, fresh = calibration_candidates(ctx.space, n_random=n, seed=seed)
    return b, [apply_candidate(ctx.model, c, b.example_input, b.calib_batches[:1]).eval() for c in fresh[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="x86-vnni")
    ap.add_argument("--held-out", default="resnet-small")
    ap.add_argument("--calibrated", default="demo-cnn")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--per-model", type=int, default=14)
    args = ap.parse_args()
    torch.set_num_threads(1)  # TVM's pool does the timed work; torch only compresses
    profile = load_profile(args.profile)
    store = MeasurementStore(profile)
    stored = {r.key: r.latency_ms for r in kernel_records(store)}
    held_b, held = _fresh_models(args.held_out, profile, args.seed, args.per_model)
    cal_b, cal = _fresh_models(args.calibrated, profile, args.seed, args.per_model)
    predictor = predictor_for(kernel_specs(held_b.model, held_b.example_input, profile), held_b.example_input, profile,
                              store)

    measured = {args.held_out: [], args.calibrated: []}
    for i in range(args.per_model):  # interleaved: the host's phases hit both alike
        for name, b, models in ((args.held_out, held_b, held), (args.calibrated, cal_b, cal)):
            measured[name].append(measure_model(models[i], b.example_input, profile))
            print(f"{name} #{i}: {measured[name][-1].whole.latency_ms * 1e3:.1f} µs", flush=True)

    again = [t.latency_ms / stored[k.key] for m in measured[args.calibrated]
             for k, t in zip(m.kernels, m.kernel_timings) if t and k.is_layer and k.key in stored]
    speed = float(np.median(again))
    families: dict[str, list[float]] = {}
    candidates = []
    for i, m in enumerate(measured[args.held_out]):
        timed = [(k, t.latency_ms) for k, t in zip(m.kernels, m.kernel_timings) if t and k.is_layer]
        alone_pred = sum(predictor.kernel_ms(k) for k, _ in timed)
        alone_meas = sum(t for _, t in timed)
        whole_pred = predictor.predict(m.kernels)
        candidates.append({"candidate": i, "whole_ms": m.whole.latency_ms, "predicted_ms": whole_pred,
                           "tasks_predicted_ms": alone_pred, "tasks_measured_ms": alone_meas,
                           "graph_predicted_ms": whole_pred - alone_pred,
                           "graph_measured_ms": m.whole.latency_ms - alone_meas})
        for k, t in timed:
            fam = kernel_family(k) + (" (stored)" if k.key in stored else "")
            acc = families.setdefault(fam, [0.0, 0.0, 0])
            acc[0] += predictor.kernel_ms(k)
            acc[1] += t
            acc[2] += 1

    print(f"\n{args.calibrated}'s stored kernels timed again: {len(again)}, now / stored ×{speed:.3f} "
          f"(IQR {np.percentile(again, 25):.3f}-{np.percentile(again, 75):.3f})")
    print(f"{args.held_out}: Σ over {args.per_model} candidates, predicted / measured − 1")
    print(f"{'family':<32} {'tasks':>5} {'now':>8} {'at calibration speed':>22}")
    table = {}
    for fam, (p, t, n) in sorted(families.items()):
        table[fam] = {"tasks": n, "predicted_ms": p, "measured_ms": t, "error_now": p / t - 1,
                      "error_at_calibration_speed": p / (t / speed) - 1}
        print(f"{fam:<32} {n:>5} {(p / t - 1) * 100:>+7.1f}% {(p * speed / t - 1) * 100:>+21.1f}%")
    graph_err = [(c["graph_predicted_ms"] - c["graph_measured_ms"]) / c["whole_ms"] for c in candidates]
    task_err = [(c["tasks_predicted_ms"] * speed - c["tasks_measured_ms"]) / c["tasks_measured_ms"] for c in candidates]
    print(f"per candidate: tasks Σ predicted vs measured at calibration speed, median {np.median(task_err) * 100:+.1f}%; "
          f"graph pricing's error as a share of the whole, median {np.median(graph_err) * 100:+.1f}% "
          f"({min(graph_err) * 100:+.1f} to {max(graph_err) * 100:+.1f})")
    OUT.write_text(json.dumps({"args": vars(args), "speed_now_over_stored": speed, "stored_kernels_timed": len(again),
                               "families": table, "candidates": candidates,
                               "median_task_error_at_calibration_speed": float(np.median(task_err)),
                               "median_graph_error_share_of_whole": float(np.median(graph_err))}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
