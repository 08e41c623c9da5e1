"""How long latency prediction takes per candidate (DESIGN §7: ≤ 100 µs).

Random candidates of the demo's default space are compressed once; then, per candidate, we time
(a) extracting its kernels from the deployed graph (`kernel_specs`, a recorded forward pass) and
(b) predicting from those kernels with a fresh predictor (cold: work-model estimates for unseen
kernels) and again (warm: every kernel cached). Needs the profile calibrated on this host
(`automc calibrate --profile x86-avx2`). Prints a table; writes experiments/predictor_speed.json.

    .venv/bin/python experiments/predictor_speed.py [--profile x86-avx2] [--candidates 100]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default=None, help="default: this host's x86 profile")
    parser.add_argument("--model", default="demo-cnn")
    parser.add_argument("--candidates", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from automc.api import prepare
    from automc.compress import apply_candidate
    from automc.deploy.lower import kernel_specs
    from automc.latency.calibrate import architecture_key, predictor_for
    from automc.latency.predictor import CalibratedPredictor
    from automc.model.zoo import load_builtin
    from automc.search.runner import random_params
    from automc.search.space import candidate_from_params

    from automc.api import default_profile_name

    args.profile = args.profile or default_profile_name()
    builtin = load_builtin(args.model)
    ctx = prepare(builtin.model, builtin.example_input, builtin.evaluate, args.profile, "default",
                  builtin.calib_batches)
    predictor = predictor_for(ctx.model, ctx.example_input, ctx.profile)
    if not isinstance(predictor, CalibratedPredictor):
        raise SystemExit(f"profile {args.profile} is not calibrated here: run `automc calibrate --profile {args.profile}`")
    architecture = architecture_key(ctx.model, ctx.example_input, ctx.profile)
    rng = random.Random(0)
    models = [apply_candidate(ctx.model, candidate_from_params(ctx.space, random_params(ctx.space, rng)),
                              ctx.example_input, ctx.calib_batches) for _ in range(args.candidates)]

    extract_us, cold_us, warm_us, n_kernels = [], [], [], []
    for m in models:
        t = time.perf_counter()
        kernels = kernel_specs(m, ctx.example_input, ctx.profile)
        extract_us.append((time.perf_counter() - t) * 1e6)
        fresh = CalibratedPredictor(predictor.store, architecture)
        t = time.perf_counter()
        fresh.predict(kernels)
        cold_us.append((time.perf_counter() - t) * 1e6)
        t = time.perf_counter()
        fresh.predict(kernels)
        warm_us.append((time.perf_counter() - t) * 1e6)
        n_kernels.append(len(kernels))

    rows = {
        "kernel extraction (recorded forward of the deploy module)": extract_us,
        "prediction, cold (work model for unseen kernels)": cold_us,
        "prediction, warm (all kernels cached)": warm_us,
    }
    print(f"{args.candidates} random candidates of {args.model}/default, {statistics.median(n_kernels):.0f} kernels "
          f"each (median), profile {args.profile}, {predictor.n_measured} stored kernels")
    print(f"| step | median µs | p90 µs |\n|---|---|---|")
    out = {"profile": args.profile, "model": args.model, "candidates": args.candidates, "kernels_median": statistics.median(n_kernels),
           "stored_kernels": predictor.n_measured, "steps": {}}
    for name, xs in rows.items():
        p90 = statistics.quantiles(xs, n=10)[-1]
        print(f"| {name} | {statistics.median(xs):.0f} | {p90:.0f} |")
        out["steps"][name] = {"median_us": statistics.median(xs), "p90_us": p90}
    path = Path(__file__).with_name("predictor_speed.json")
    results = json.loads(path.read_text()) if path.exists() else {}
    results = {k: v for k, v in results.items() if isinstance(v, dict) and "steps" in v}  # one entry per model
    results[args.model] = out
    path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
