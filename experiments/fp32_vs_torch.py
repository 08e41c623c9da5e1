"""Deployed fp32 code against torch eager on the same host, in one run (issue #3: tuned TVM fp32
within 1.5× of torch eager).

For a built-in model (demo-cnn, mobilenetv2, ...): torch eager fp32 (2 threads), TVM with an
empty tuning database and TVM with the profile's database (tasks missing from it are tuned at
the profile's trials per kernel first, as calibration and export do). On an AVX-512 profile
convs and dense layers are hand-scheduled packed kernels in both (``deploy.x86``); the
database then only holds the other tasks (pooling, unfused adds, ...). Medians of `repeat` runs of at
least `min_repeat_ms` each, the same settings for all. Prints a table; writes
experiments/fp32_vs_torch.json.

    .venv/bin/python experiments/fp32_vs_torch.py [--model mobilenetv2] [--profile x86-vnni]

The JSON file keeps one entry per model (a run replaces its model's entry).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _timing import median_ms


def task_table(measured) -> dict[str, dict]:
    """Per kernel family (``latency.predictors.kernel_family``): how many layer tasks, their
    summed time alone (ms) and their range of throughput (GMAC/s)."""
    from automc.latency.predictors import kernel_family

    table: dict[str, dict] = {}
    for spec, timing in zip(measured.kernels, measured.kernel_timings):
        if timing is None or not spec.macs:
            continue
        rate = spec.macs / timing.median_ms / 1e6
        t = table.setdefault(kernel_family(spec), {"tasks": 0, "total_ms": 0.0, "gmacs_min": rate, "gmacs_max": rate})
        t["tasks"] += 1
        t["total_ms"] += timing.median_ms
        t["gmacs_min"], t["gmacs_max"] = min(t["gmacs_min"], rate), max(t["gmacs_max"], rate)
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default=None, help="default: this host's x86 profile")
    parser.add_argument("--model", default="demo-cnn")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from automc.deploy.build import import_meta_schedule, open_database
    from automc.deploy.compile import compile_candidate
    from automc.latency.calibrate import measure_model, require_measurable
    from automc.latency.measure import time_executable
    from automc.model.zoo import load_builtin
    from automc.profiles import load_profile

    from automc.api import default_profile_name

    profile = load_profile(args.profile or default_profile_name())
    require_measurable(profile)
    builtin = load_builtin(args.model, verbose=True)
    model, x = builtin.model.eval(), builtin.example_input
    repeat, min_ms = max(profile.tuning.repeat, 9), max(profile.tuning.min_repeat_ms, 200)
    profile = profile.model_copy(update={"tuning": profile.tuning.model_copy(update={"repeat": repeat, "min_repeat_ms": min_ms})})

    rows: dict[str, float] = {}
    rows["torch eager fp32"] = median_ms(lambda: model(x), repeat, min_ms)
    ms = import_meta_schedule()
    with tempfile.TemporaryDirectory() as tmp:
        empty = ms.database.JSONDatabase(str(Path(tmp) / "w.json"), str(Path(tmp) / "r.json"), allow_missing=True)
        untuned = compile_candidate(model, None, x, profile, database=empty, trials_per_task=0).executable
        rows["TVM fp32, empty database (packed kernels where the profile has them, else default schedules)"] = time_executable(untuned, [x.numpy()], profile).median_ms
    measured = measure_model(model, x, profile, open_database(profile))
    rows[f"TVM fp32, profile database ({profile.tuning.trials_per_kernel} trials/task)"] = measured.whole.median_ms
    rows["torch eager fp32 (again, after TVM)"] = median_ms(lambda: model(x), repeat, min_ms)

    base = rows["torch eager fp32"]
    shape = "×".join(map(str, x.shape))
    print(f"{args.model} {shape}, profile {profile.name}, 2 threads, median of {repeat} runs ≥ {min_ms:g} ms each")
    print("| code | median ms | ÷ torch eager |\n|---|---|---|")
    for name, value in rows.items():
        print(f"| {name} | {value:.3f} | {value / base:.2f} |")
    tasks = task_table(measured)
    print(f"\nper task kind (the profile-database build, each task timed alone; whole {measured.whole.median_ms:.3f} ms)")
    print("| kind | tasks | total ms | GMAC/s (min–max) |\n|---|---|---|---|")
    for kind, t in tasks.items():
        print(f"| {kind} | {t['tasks']} | {t['total_ms']:.3f} | {t['gmacs_min']:.1f}–{t['gmacs_max']:.1f} |")
    out = Path(__file__).with_name("fp32_vs_torch.json")
    results = json.loads(out.read_text()) if out.exists() else {}
    if "model" in results:  # the older single-model layout
        results = {results["model"]: results}
    results[args.model] = {"profile": profile.name, "model": args.model, "repeat": repeat, "min_repeat_ms": min_ms,
                           "measured_at": time.strftime("%Y-%m-%d %H:%M"), "ms": rows, "tasks": tasks}
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
