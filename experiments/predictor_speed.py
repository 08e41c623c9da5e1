"""How long latency prediction takes per candidate (DESIGN §7: ≤ 100 µs).

As a search does it: for each architecture, one predictor is built, then fresh random candidates
(seed 1000, not the calibration's seed 0) are compressed one at a time; per candidate we time
(a) extracting its kernels from the deployed graph (`kernel_specs`, a recorded forward pass),
(b) the search's prediction right after that extraction, with the long-lived predictor, and
(c) a prediction with a fresh predictor, right after extracting again (cold: nothing priced yet,
work-model estimates for unseen kernels), then (d) the same fresh predictor again (warm).
Needs the profile calibrated (or its shipped records accepted) on this host. Prints a table;
writes experiments/predictor_speed.json.

    .venv/bin/python experiments/predictor_speed.py [--profile x86-vnni] [--candidates 40]
        [--models demo-cnn resnet-small tiny-transformer mobilenetv2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

MODELS = ["demo-cnn", "resnet-small", "tiny-transformer", "mobilenetv2"]
STEPS = {
    "extract": "kernel extraction (ms)",
    "search": "prediction right after extraction, search's predictor (µs)",
    "cold": "prediction right after extraction, fresh predictor (µs)",
    "warm": "prediction again, all kernels priced (µs)",
}


def time_model(name: str, profile_name: str, n: int, seed: int) -> dict:
    from automc.api import prepare
    from automc.compress import apply_candidate
    from automc.deploy.lower import kernel_specs
    from automc.latency.calibrate import model_key, predictor_for
    from automc.latency.predictors import CalibratedPredictor
    from automc.model.zoo import load_builtin
    from automc.search.seeds import random_params
    from automc.search.space import candidate_from_params

    builtin = load_builtin(name)
    ctx = prepare(builtin.model, builtin.example_input, builtin.evaluate, profile_name, "default",
                  builtin.calib_batches)
    predictor = predictor_for(ctx.kernels, ctx.example_input, ctx.profile)
    if not isinstance(predictor, CalibratedPredictor):
        raise SystemExit(f"profile {profile_name} is not calibrated here: run `automc calibrate --profile {profile_name}`")
    architecture = model_key(ctx.kernels, ctx.example_input)
    rng = random.Random(seed)
    times: dict[str, list[float]] = {k: [] for k in STEPS}
    n_kernels, n_unstored = [], []
    for _ in range(n):
        m = apply_candidate(ctx.model, candidate_from_params(ctx.space, random_params(ctx.space, rng)),
                            ctx.example_input, ctx.calib_batches)
        t = time.perf_counter()
        kernels = kernel_specs(m, ctx.example_input, ctx.profile)
        t1 = time.perf_counter()
        predictor.predict(kernels)
        t2 = time.perf_counter()
        times["extract"].append((t1 - t) * 1e3)
        times["search"].append((t2 - t1) * 1e6)
        fresh = CalibratedPredictor(predictor.store, architecture)
        n_unstored.append(sum(k.is_layer and not fresh.is_stored(k) for k in kernels))
        kernels = kernel_specs(m, ctx.example_input, ctx.profile)
        t = time.perf_counter()
        fresh.predict(kernels)
        t1 = time.perf_counter()
        fresh.predict(kernels)
        t2 = time.perf_counter()
        times["cold"].append((t1 - t) * 1e6)
        times["warm"].append((t2 - t1) * 1e6)
        n_kernels.append(len(kernels))
    return {"candidates": n, "seed": seed, "kernels_median": statistics.median(n_kernels),
            "unstored_layer_kernels_median": statistics.median(n_unstored),
            "stored_kernels": predictor.n_measured,
            "steps": {k: {"median": statistics.median(xs), "p90": statistics.quantiles(xs, n=10)[-1]}
                      for k, xs in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default=None, help="default: this host's x86 profile")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as one search worker

    from automc.api import default_profile_name

    profile = args.profile or default_profile_name()
    results = {"profile": profile, "models": {}}
    for name in args.models:
        results["models"][name] = time_model(name, profile, args.candidates, args.seed)
    print(f"{args.candidates} fresh random candidates (seed {args.seed}) per model, profile {profile}; "
          "median (p90)")
    print("| model | kernels | unstored layer kernels | " + " | ".join(STEPS.values()) + " |")
    print("|---|---|---|" + "---|" * len(STEPS))
    for name, r in results["models"].items():
        cells = [f"{r['steps'][k]['median']:.{1 if k == 'extract' else 0}f} ({r['steps'][k]['p90']:.{1 if k == 'extract' else 0}f})"
                 for k in STEPS]
        print(f"| {name} | {r['kernels_median']:.0f} | {r['unstored_layer_kernels_median']:.0f} | " + " | ".join(cells) + " |")
    Path(__file__).with_name("predictor_speed.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
