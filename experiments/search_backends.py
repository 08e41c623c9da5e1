"""Cost per trial of each search backend, and the speed-up of two workers over one.

Two workloads, each run on ``local`` (1 and 2 jobs) and ``ray`` (Ray started here, 1 and 2
jobs), one after the other on the same host:

- ``overhead``: a score that costs nothing (the toy space of the tests), so a trial's time is
  the backend's own cost (ask, ship the candidate, tell the journal);
- ``demo-cnn``: the built-in demo model, ``eval`` proxy, through ``automc.search``.

Times come from the run's journal: ``phase`` is first ask to last tell (actor start-up included),
``per trial`` is phase / trials, ``steady`` excludes the first ``jobs`` trials (start-up).
Prints a table and writes ``search_backends.json``.

    python experiments/search_backends.py --trials 12 --overhead-trials 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from automc.search.backends import make_backend
from automc.search.pareto import load_study
from automc.search.driver import SearchSettings, run_search
from automc.search.space import LayerOptions, ResolvedSpace
from automc.search.worker import WorkerScorers
from automc.types import Candidate, Evaluation

SETUPS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def free_score(candidate: Candidate) -> Evaluation:
    """A score that costs nothing but still differs per candidate (so the front is real)."""
    bits = sum(c.w_bits for c in candidate.layers.values())
    return Evaluation(0.9 - 0.001 * (32 * len(candidate.layers) - bits), bits / 32.0, bits * 100)


def free_scorer():
    return WorkerScorers(free_score)


def toy_space() -> ResolvedSpace:
    # 6^8 candidates: a search proposes one again (and reuses its first scores) too rarely to count
    return ResolvedSpace("t", tuple(LayerOptions(n, ((32, 32), (8, 8), (4, 8)), (0.0, 0.5), (1.0,))
                                    for n in "abcdefgh"), {}, None, None)


def phase_times(run_dir: Path, jobs: int) -> dict[str, float]:
    trials = [t for t in load_study(run_dir).trials if t.datetime_start and t.datetime_complete]
    start = min(t.datetime_start for t in trials)
    ends = sorted(t.datetime_complete for t in trials)
    phase = (ends[-1] - start).total_seconds()
    steady = (ends[-1] - ends[jobs - 1]).total_seconds() / max(1, len(ends) - jobs)
    return {"trials": len(trials), "phase_s": phase, "per_trial_s": phase / len(trials), "steady_per_trial_s": steady,
            "failed": sum(t.state.name == "FAIL" for t in trials)}


def run_overhead(name: str, jobs: int, n: int, root: Path) -> dict[str, float]:
    run_dir = root / f"overhead-{name}-{jobs}"
    backend = make_backend(name, jobs)
    backend.connect()
    try:
        run_search(toy_space(), free_score, run_dir, SearchSettings(n_trials=n, seed=0, progress=False,
                                                                   sensitivity_seeds=False),
                   backend=backend, rebuild=free_scorer)
    finally:
        backend.close()
    return phase_times(run_dir, jobs)


def run_demo(name: str, jobs: int, n: int, root: Path, profile: str | None) -> dict[str, float]:
    import automc
    from automc.model.source import BUILTIN, ModelSource, load_model

    source = ModelSource(BUILTIN, "demo-cnn")
    built = load_model(source)
    run_dir = root / f"demo-{name}-{jobs}"
    start = time.perf_counter()
    automc.search(built.model, built.example_input, built.evaluate, profile=profile, n_trials=n,
                  calib_batches=built.calib_batches, train_batches=built.train_batches, run_dir=run_dir,
                  calibration_budget_s=1.0, source=source, progress=False, backend=name, jobs=jobs)
    return {**phase_times(run_dir, jobs), "search_call_s": time.perf_counter() - start}


def main() -> None:
    # Ray is started here on loopback only: without a token, so none is left behind in ~/.ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="demo-cnn trials per setup (0: skip)")
    parser.add_argument("--overhead-trials", type=int, default=100, help="free-score trials per setup")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--out", default=str(Path(__file__).with_name("search_backends.json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="search-backends-") as tmp:
        root = Path(tmp)
        for workload in ("overhead", "demo-cnn"):
            n = args.overhead_trials if workload == "overhead" else args.trials
            if n <= 0:
                continue
            for name, jobs in SETUPS:
                times = (run_overhead(name, jobs, n, root) if workload == "overhead"
                         else run_demo(name, jobs, n, root, args.profile))
                rows.append({"workload": workload, "backend": name, "jobs": jobs, **times})
                print(rows[-1], flush=True)
    for workload in {r["workload"] for r in rows}:
        base = next(r for r in rows if r["workload"] == workload and r["backend"] == "local" and r["jobs"] == 1)
        for r in rows:
            if r["workload"] == workload:
                r["speedup_vs_local_1"] = base["phase_s"] / r["phase_s"]
    print(f"\n{'workload':10} {'backend':8} {'jobs':>4} {'trials':>6} {'phase s':>8} {'s/trial':>8} "
          f"{'steady s/trial':>14} {'speed-up':>8}")
    for r in rows:
        print(f"{r['workload']:10} {r['backend']:8} {r['jobs']:>4} {r['trials']:>6} {r['phase_s']:>8.2f} "
              f"{r['per_trial_s']:>8.3f} {r['steady_per_trial_s']:>14.3f} {r['speedup_vs_local_1']:>7.2f}×")
    out = {"host": platform.node(), "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
