"""Is the searched front worth deploying? Its fastest point at ≤ 1 point loss, recovered and
measured, against uniform int8 (also recovered) and against ONNX Runtime on the original model;
and the search's hypervolume against random search at equal trials.

For each built-in model (default: demo-cnn), on this host's x86 profile:

1. The search a user runs with recovery: ``--trials`` trials of the default sampler with the
   multi-fidelity scoring of ``--proxy eval --promote finetune`` (promising trials recovered
   briefly) and ``--min-accuracy`` as its floor (``make demo`` runs this search with 0.9), seed
   ``--seeds[0]``.
2. Hypervolume: ``--hv-trials`` trials of the default sampler and of random search, each with
   every seed of ``--seeds``, scored by the cheap ``eval`` proxy (promotion would cost a
   recovery per promising trial in each of them). Each final front's hypervolume in
   (1 − accuracy, latency ÷ the worst latency seen, size ÷ the worst size seen) against the
   reference point (1, 1.1, 1.1), and wall time.
3. From the search of step 1: its front points from fastest predicted, each
   exported with recovery (``automc export --finetune``, the default budget) until one keeps
   its recovered accuracy within ``--max-loss`` of fp32 (at most ``--max-exports`` tried); and
   the uniform-int8 baseline trial, exported with the same recovery.
4. In one run, interleaved rounds (this host's speed comes in phases of minutes): both exported
   TVM libraries (timed by TVM's ``time_evaluator``, as automc times them; a Python call per
   inference adds its own overhead, which ORT's figures carry), the chosen point's ``model.onnx`` in ONNX Runtime, and ONNX Runtime fp32 and
   static-QDQ int8 of the original model. Accuracy of every artifact as it runs (batch 1, one
   validation image at a time).

Run directories are kept under ``--runs``: a rerun resumes each search where it stopped.
Prints a table per model; writes experiments/front_quality-<model>.json.

    AUTOMC_CACHE=… .venv/bin/python experiments/front_quality.py [--models demo-cnn resnet-small]
        [--trials 150 --min-accuracy 0.9] [--seeds 0 1 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import torch
from _timing import median_ms
from backends import PerSample, onnx_export, ort_quantize, ort_runner, tvm_runner

THREADS = 2


def hypervolume(studies: dict[str, optuna.Study]) -> dict[str, float]:
    """Each study's final hypervolume, all in one normalisation (see the module docstring)."""
    from optuna._hypervolume import compute_hypervolume  # Optuna's own (used by its HV plot)

    done = {k: [t.values for t in s.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if t.values]
            for k, s in studies.items()}
    worst_latency = max(v[1] for vs in done.values() for v in vs)
    worst_size = max(v[2] for vs in done.values() for v in vs)
    out = {}
    for k, vs in done.items():
        losses = np.array([[1 - a, lat / worst_latency, size / worst_size] for a, lat, size in vs])
        out[k] = float(compute_hypervolume(losses, np.array([1.0, 1.1, 1.1])))
    return out


def run_search(name: str, builtin, args, root: Path, sampler: str, seed: int, trials: int,
               promote: str | None) -> tuple[optuna.Study, dict]:
    """One search (resumed when its run directory holds one); its study and a row for the table."""
    import automc

    key = f"{sampler}-s{seed}" + (f"-{promote}" if promote else "")
    run_dir = root / f"{name}-{key}"
    start = time.perf_counter()
    result = automc.search(builtin.model, builtin.example_input, builtin.evaluate, profile=args.profile,
                           n_trials=trials, calib_batches=builtin.calib_batches, run_dir=run_dir, sampler=sampler,
                           seed=seed, progress=False, proxy="eval", promote=promote,
                           train_batches=builtin.train_batches, min_accuracy=args.min_accuracy if promote else None)
    promoted = sum(t.user_attrs.get("fidelity") == promote for t in result.study.trials) if promote else 0
    row = {"sampler": sampler, "seed": seed, "trials": trials, "promote": promote,
           "wall_s": time.perf_counter() - start, "front": len(result.pareto), "promoted": promoted,
           "run_dir": str(run_dir)}
    print(f"  search {key}: {row['wall_s']:.0f} s, front {row['front']}, promoted {promoted}", flush=True)
    return result.study, row


def hypervolume_runs(name: str, builtin, args, root: Path) -> dict:
    studies, rows = {}, {}
    for sampler in (args.sampler, "random"):
        for seed in args.seeds:
            key = f"{sampler}-s{seed}"
            studies[key], rows[key] = run_search(name, builtin, args, root, sampler, seed, args.hv_trials, None)
    for key, hv in hypervolume(studies).items():
        rows[key]["hypervolume"] = hv
    return rows


def pick_and_export(builtin, run_dir: Path, fp32_acc: float, args, out: Path) -> dict:
    """The fastest front point whose recovered accuracy is within ``max_loss`` of fp32, and the
    uniform-int8 baseline, both exported with recovery."""
    import automc

    result = automc.open_run(run_dir, model=builtin.model, example_input=builtin.example_input,
                             evaluate=builtin.evaluate, calib_batches=builtin.calib_batches,
                             train_batches=builtin.train_batches)
    front = result.pareto.sort_values("latency_ms")
    int8 = next(t.number for t in result.study.trials if t.user_attrs.get("baseline") == "int8")

    def export(trial: int, where: Path) -> dict:
        """Export with recovery, or read an export a previous run of this script left there."""
        if (where / "config.json").exists() and (where / "export_report.json").exists():
            config, report = (json.loads((where / f).read_text()) for f in ("config.json", "export_report.json"))
        else:
            r = result.export(trial, where, finetune=True)
            config, report = {"recovery": asdict(r.recovery)}, asdict(r)
        return {"trial": trial, "export": str(where), "predicted_ms": report["predicted_ms"],
                "export_measured_ms": report["measured_ms"],
                "recovered_accuracy": config["recovery"]["accuracy_after"], "recovery_s": config["recovery"]["seconds"]}

    picked = {"uniform int8": export(int8, out / "int8")}
    print(f"  uniform int8 (trial {int8}): recovered {picked['uniform int8']['recovered_accuracy']:.4f}", flush=True)
    tried = []
    for trial in [int(t) for t in front["trial"]][:args.max_exports]:
        if trial == int8:
            continue
        tried.append(export(trial, out / f"trial{trial}"))
        acc = tried[-1]["recovered_accuracy"]
        print(f"  front trial {trial}: predicted {tried[-1]['predicted_ms']:.3f} ms, recovered {acc:.4f}", flush=True)
        if acc >= fp32_acc - args.max_loss:
            picked["front point"] = tried[-1]
            break
    return {"picked": picked, "tried": tried}


def time_side_by_side(builtin, picked: dict, args, tmp: Path) -> dict:
    x = builtin.example_input.contiguous()
    import tvm

    from automc.latency.measure import run_library
    from automc.profiles import load_profile

    # TVM libraries timed as automc times them (time_evaluator, in C++), at the same repeats as
    # the Python callables; their accuracy through the Python VM, one image at a time
    profile = load_profile(args.profile)
    profile = profile.model_copy(update={"tuning": profile.tuning.model_copy(
        update={"repeat": args.repeat, "min_repeat_ms": args.min_repeat_ms})})
    runners, timers = {}, {}
    for label, p in picked.items():
        path = Path(p["export"]) / "model.so"
        runners[f"automc {label} (TVM library)"] = tvm_runner(tvm.runtime.load_module(str(path)))  # as a user loads it
        timers[f"automc {label} (TVM library)"] = (
            lambda path=path: run_library(path, [x.numpy()], profile)[1].median_ms)
    if "front point" in picked:
        runners["automc front point (its model.onnx in ORT)"] = ort_runner(Path(picked["front point"]["export"]) / "model.onnx")
    fp32_path = onnx_export(builtin.model.eval(), x, tmp / "model.onnx")
    runners["ONNX Runtime fp32 (original)"] = ort_runner(fp32_path)
    runners["ONNX Runtime int8 (original, static QDQ)"] = ort_runner(ort_quantize(fp32_path, tmp / "int8.onnx",
                                                                                   builtin.calib_batches))
    rows = {}
    for label, run in runners.items():
        with torch.inference_mode():
            rows[label] = {"accuracy": builtin.evaluate(PerSample(run)), "rounds_ms": []}
    for r in range(args.rounds):
        for label, run in runners.items():
            timer = timers.get(label, lambda: median_ms(lambda: run(x), args.repeat, args.min_repeat_ms))
            rows[label]["rounds_ms"].append(timer())
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{v['rounds_ms'][-1]:.3f}" for v in rows.values()),
              flush=True)
    for v in rows.values():
        v["ms"] = float(np.median(v["rounds_ms"]))
    return rows


def main() -> None:
    from automc.api import default_profile_name
    from automc.model.zoo import load_builtin
    from automc.search.samplers import DEFAULT_SAMPLER

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo-cnn"])
    parser.add_argument("--profile", default=None, help="default: this host's x86 profile")
    parser.add_argument("--trials", type=int, default=60, help="trials of the search with recovery")
    parser.add_argument("--hv-trials", type=int, default=60, help="trials of each hypervolume search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, help=f"the search's sampler (default {DEFAULT_SAMPLER}, "
                        "automc's default)")
    parser.add_argument("--min-accuracy", type=float, default=None,
                        help="the search with recovery's accuracy floor (make demo: 0.9); the hypervolume searches have none")
    parser.add_argument("--max-loss", type=float, default=0.01, help="accuracy loss allowed (fraction; 0.01 = 1 point)")
    parser.add_argument("--max-exports", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--min-repeat-ms", type=float, default=200.0)
    parser.add_argument("--torch-threads", type=int, default=THREADS,
                        help="torch's threads for search and recovery (1 on a host shared with other work)")
    parser.add_argument("--runs", type=Path, default=Path("runs/front_quality"))
    args = parser.parse_args()
    args.profile = args.profile or default_profile_name()
    torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" per export
    from automc._host import host_description

    for name in args.models:
        results = {"host": host_description(), "profile": args.profile, "date": time.strftime("%Y-%m-%d %H:%M"),
                   "args": {k: str(v) for k, v in vars(args).items()}, "python": platform.python_version(),
                   "models": {}}
        builtin = load_builtin(name, verbose=True)
        with torch.inference_mode():
            fp32_acc = builtin.evaluate(builtin.model.eval())
        print(f"{name}: fp32 accuracy {fp32_acc:.4f}", flush=True)
        _, searched = run_search(name, builtin, args, args.runs, args.sampler, args.seeds[0], args.trials, "finetune")
        searches = hypervolume_runs(name, builtin, args, args.runs)
        exports = pick_and_export(builtin, Path(searched["run_dir"]), fp32_acc, args, args.runs / f"{name}-exports")
        with tempfile.TemporaryDirectory() as tmp:
            timed = time_side_by_side(builtin, exports["picked"], args, Path(tmp))
        results["models"][name] = {"fp32_accuracy": fp32_acc, "search": searched, "hypervolume_searches": searches,
                                   **exports, "timed": timed}
        out = Path(__file__).with_name(f"front_quality-{name}.json")
        out.write_text(json.dumps(results, indent=2))
        print_tables(name, results["models"][name], args)
        print(f"wrote {out}")


def print_tables(name: str, r: dict, args) -> None:
    print(f"\n{name} (fp32 accuracy {r['fp32_accuracy']:.4f}), {args.rounds} interleaved rounds, batch 1, {THREADS} threads")
    print(f"| what | accuracy | ms (median round) |\n|---|---|---|")
    for label, v in r["timed"].items():
        print(f"| {label} | {v['accuracy']:.4f} | {v['ms']:.3f} |")
    timed = r["timed"]
    front, int8 = timed.get("automc front point (TVM library)"), timed.get("automc uniform int8 (TVM library)")
    if front and int8:
        ratio = statistics.median(b / a for a, b in zip(front["rounds_ms"], int8["rounds_ms"]))
        print(f"front point over uniform int8: ×{ratio:.2f} faster (median of per-round ratios)")
    else:
        print(f"no front point kept its recovered accuracy within {args.max_loss:.2%} of fp32 "
              f"in {args.max_exports} exports")
    s = r["search"]
    print(f"search with recovery: {s['trials']} trials, {s['promoted']} promoted, front {s['front']}, {s['wall_s']:.0f} s")
    for t in r["tried"]:
        print(f"  exported trial {t['trial']}: predicted {t['predicted_ms']:.3f} ms, recovered {t['recovered_accuracy']:.4f}")
    print("\n| search (eval proxy) | hypervolume | front | wall s |\n|---|---|---|---|")
    for key, v in r["hypervolume_searches"].items():
        print(f"| {key} | {v['hypervolume']:.4f} | {v['front']} | {v['wall_s']:.0f} |")
    by = {sampler: [v["hypervolume"] for v in r["hypervolume_searches"].values() if v["sampler"] == sampler]
          for sampler in (args.sampler, "random")}
    print(f"mean hypervolume: {args.sampler} {np.mean(by[args.sampler]):.4f}, random {np.mean(by['random']):.4f}")

if __name__ == "__main__":
    main()
