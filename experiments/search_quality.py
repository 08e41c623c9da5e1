"""Search quality: hypervolume after equal trials for every sampler and for random search,
over seeds and built-in models, in-process and on Ray, with wall time.

Every search is ``automc.search`` with the ``eval`` proxy (no promotion), one profile and the
store of ``AUTOMC_CACHE``. Each model first gets an untimed 0-trial search that calibrates it if
the store lacks it (``--calibration-budget``) and warms imports. Seeds run outermost, samplers
inside, so a slow phase of the host falls on every sampler alike.

Rows: ``local`` (in this process, one trial at a time) for each of ``--samplers`` (default: the
whole registry); ``ray`` (``--ray-jobs`` one-CPU actors on a Ray instance started on 127.0.0.1,
its start-up reported apart) for each of ``--ray-samplers`` (default: automc's default and
random). With 2 or more actors results reach the sampler out of order, so a Ray row is not
reproducible from its seed. Every search first runs the same queued trials (the 5 uniform
baselines, and the single changes of ``automc.search.seeds`` when they fit); NSGA-II/III's first
generation (16) is drawn as random search draws it with the same seed: a paired comparison.

Hypervolume (``automc.search.hypervolume``, in [0, 1]) of each final front of feasible trials in
(accuracy ↑, latency ↓, size ↓), normalised per model: ideal (1, 0 ms, 0 bytes) → 0, reference
(accuracy 0, ``--margin`` × the fp32 baseline's latency and size) → 1; points beyond it count
nothing (``beyond_ref``). The reference depends on the model and the store only, so runs on one
store compare. ``hv_near`` puts the accuracy reference at fp32 − ``--near`` (0.05), so points
that lost most of their accuracy add nothing; ``fastest_1pt_ms`` is the fastest feasible trial
within 1 point of fp32. ``wall_s`` is the whole ``automc.search`` call, ``trials_s`` first trial
start to last trial end (journal).

Verdict: the default sampler's mean hypervolume over seeds against random's, per model and
backend. Writes ``experiments/search_quality.json`` after every search. Defaults (48 searches):
    AUTOMC_CACHE=… .venv/bin/python experiments/search_quality.py
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).with_name("search_quality.json")

# Seconds on a quiet 2-core host, for the estimate only: a fixed cost per search (preparation,
# figures, Ray actors building their scorer) + a cost per trial (gp's extra: its GP fit).
SEARCH_FIXED_S = {"local": 8.0, "ray": 25.0}
TRIAL_S = {"demo-cnn": 1.0, "resnet-small": 0.7}
SAMPLER_EXTRA_TRIAL_S = {"gp": 1.5}
RAY_EFFICIENCY = 0.85
RAY_START_S = 10.0
WARMUP_S = 30.0


def default_sampler() -> str:
    """The sampler ``automc.search`` uses when none is given."""
    import automc

    return inspect.signature(automc.search).parameters["sampler"].default


def search_s(args, plan: list[tuple[str, str, int, str]]) -> float:
    """Expected seconds of the searches in ``plan`` (see ``SEARCH_FIXED_S``, ``TRIAL_S``)."""
    total = 0.0
    for model, backend, _, sampler in plan:
        per_trial = TRIAL_S.get(model, 0.5) + SAMPLER_EXTRA_TRIAL_S.get(sampler, 0.0)
        if backend == "ray":
            per_trial /= RAY_EFFICIENCY * min(args.ray_jobs, os.cpu_count() or 1)
        total += SEARCH_FIXED_S[backend] + args.trials * per_trial
    return total


def estimate_s(args, plan: list[tuple[str, str, int, str]], to_calibrate: int) -> float:
    """Expected seconds of the whole script: warm-ups (``to_calibrate`` of them calibrating, up to
    their budget), Ray's start-up and the searches."""
    return (WARMUP_S * len(args.models) + to_calibrate * args.calibration_budget
            + (RAY_START_S if "ray" in args.backends else 0.0) + search_s(args, plan))


def load_models(args) -> dict[str, tuple[object, object, bool]]:
    """name → (its ModelSource, the built model, whether the store still lacks its calibration).

    Checks the profile's shipped measurements first, as ``automc.search`` does (timing a few
    reference models once per cache; the verdict decides whether the shipped file counts)."""
    from automc.deploy.lower import kernel_specs
    from automc.devices import device_runner
    from automc.latency.calibrate import is_calibrated
    from automc.latency.shipped import check_shipped
    from automc.latency.store import MeasurementStore
    from automc.model.source import BUILTIN, ModelSource, load_model
    from automc.profiles import load_profile

    profile = load_profile(args.profile)
    check_shipped(profile)
    store = MeasurementStore(profile)
    measurable = device_runner(profile).measurable()
    out = {}
    for name in args.models:
        source = ModelSource(BUILTIN, name)
        built = load_model(source, verbose=True)
        kernels = kernel_specs(built.model.eval(), built.example_input, profile)
        out[name] = (source, built, measurable and not is_calibrated(kernels, built.example_input, store))
    return out


def make_plan(args) -> list[tuple[str, str, int, str]]:
    """(model, backend, seed, sampler) in running order: seeds outside samplers."""
    samplers = {"local": args.samplers, "ray": args.ray_samplers}
    return [(m, b, seed, s) for m in args.models for b in args.backends for seed in args.seeds for s in samplers[b]]


def start_ray(jobs: int) -> float:
    """Ray on this machine, loopback only, ``jobs`` CPUs; its start-up time."""
    import logging

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token left behind in ~/.ray
    start = time.perf_counter()
    ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             _node_ip_address="127.0.0.1")
    return time.perf_counter() - start


def run_one(built, source, args, model: str, backend: str, seed: int, sampler: str, run_dir: Path) -> dict:
    """One timed search; its row (hypervolume is added once the model's reference is known)."""
    import automc
    from automc.search import load_study

    start = time.perf_counter()
    error = None
    try:
        automc.search(built.model, built.example_input, built.evaluate, profile=args.profile, n_trials=args.trials,
                      calib_batches=built.calib_batches, train_batches=built.train_batches, run_dir=run_dir,
                      sampler=sampler, seed=seed, progress=False, proxy="eval", source=source,
                      calibration_budget_s=args.calibration_budget, backend=backend,
                      jobs=args.ray_jobs if backend == "ray" else None)
    except Exception as e:  # noqa: BLE001 — a sampler that fails is a finding, reported in its row
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    wall = time.perf_counter() - start
    row = {"model": model, "backend": backend, "jobs": args.ray_jobs if backend == "ray" else 1,
           "sampler": sampler, "seed": seed, "trials": args.trials, "wall_s": wall, "error": error,
           "run_dir": str(run_dir)}
    if (run_dir / "study.journal").exists():
        study = load_study(run_dir)
        timed = [t for t in study.trials if t.datetime_start and t.datetime_complete]
        fp32 = next((t.values for t in study.trials if t.user_attrs.get("baseline") == "fp32" and t.values), None)
        states = [t.state.name for t in study.trials]
        row.update(completed=states.count("COMPLETE"), failed=states.count("FAIL"),
                   trials_s=(max(t.datetime_complete for t in timed) - min(t.datetime_start for t in timed))
                   .total_seconds() if timed else None,
                   fp32=fp32,
                   failures=sorted({(str(t.user_attrs.get("error", "")).splitlines() or [""])[0][:160]
                                    for t in study.trials if t.state.name == "FAIL"}))
    return row


def score_rows(rows: list[dict], references: dict, margin: float, near: float) -> None:
    """Add hypervolume and fastest-within-1-point to every row not yet scored, against one
    reference per model (see the module docstring), set in ``references`` by the model's first
    row that has an fp32 baseline; a row whose fp32 baseline is priced otherwise is listed there."""
    from automc.search import ReferencePoint, hypervolume, load_study, pareto_frame, trials_frame

    for r in rows:
        if "hypervolume" in r or not r.get("fp32"):
            continue
        fp32 = r["fp32"]
        if r["model"] not in references:
            references[r["model"]] = {"accuracy": 0.0, "latency_ms": margin * fp32[1], "size_bytes": margin * fp32[2],
                                      "fp32_accuracy": fp32[0], "fp32_latency_ms": fp32[1], "fp32_size_bytes": fp32[2],
                                      "margin": margin, "near_accuracy": fp32[0] - near,
                                      "runs_pricing_fp32_differently": []}
        known = references[r["model"]]
        if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for a, b in
               zip(fp32, (known["fp32_accuracy"], known["fp32_latency_ms"], known["fp32_size_bytes"]))):
            known["runs_pricing_fp32_differently"].append(r["run_dir"])
        ref = ReferencePoint(0.0, known["latency_ms"], known["size_bytes"])
        study = load_study(Path(r["run_dir"]))
        front = pareto_frame(study)
        trials = trials_frame(study)
        done = trials[trials["state"] == "COMPLETE"]
        feasible = done[done["feasible"].astype(bool)]
        close = feasible[feasible["accuracy"] >= known["fp32_accuracy"] - 0.01]
        r.update(hypervolume=hypervolume(front, ref), front=len(front),
                 hv_near=hypervolume(front, ReferencePoint(known["near_accuracy"], ref.latency_ms, ref.size_bytes)),
                 beyond_ref=int(((done["latency_ms"] >= ref.latency_ms) |
                                 (done["size_bytes"].astype(float) >= ref.size_bytes)).sum()),
                 fastest_1pt_ms=float(close["latency_ms"].min()) if len(close) else None)


def summarize(rows: list[dict], default: str) -> tuple[list[dict], list[dict]]:
    """Per (model, backend, sampler): mean/stdev of hypervolume and wall time; the verdicts."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["backend"], r["sampler"]), []).append(r)
    summary = []
    for (model, backend, sampler), rs in groups.items():
        ok = [r for r in rs if r.get("hypervolume") is not None and not r["error"]]
        hvs = [r["hypervolume"] for r in ok]
        near = [r["hv_near"] for r in ok]
        fastest = [r["fastest_1pt_ms"] for r in ok if r["fastest_1pt_ms"] is not None]
        summary.append({"model": model, "backend": backend, "sampler": sampler, "seeds": [r["seed"] for r in rs],
                        "runs_ok": len(hvs), "hv_mean": statistics.fmean(hvs) if hvs else None,
                        "hv_stdev": statistics.stdev(hvs) if len(hvs) > 1 else 0.0 if hvs else None,
                        "hv_near_mean": statistics.fmean(near) if near else None,
                        "fastest_1pt_ms_mean": statistics.fmean(fastest) if fastest else None,
                        "wall_s_mean": statistics.fmean(r["wall_s"] for r in rs),
                        "trials_s_mean": statistics.fmean(r["trials_s"] for r in rs if r.get("trials_s"))
                        if any(r.get("trials_s") for r in rs) else None,
                        "failed_trials": sum(r.get("failed", 0) for r in rs),
                        "errors": sorted({r["error"] for r in rs if r["error"]})})
    verdicts = []
    for model, backend in dict.fromkeys((s["model"], s["backend"]) for s in summary):
        by = {s["sampler"]: s for s in summary if s["model"] == model and s["backend"] == backend}
        if default not in by or "random" not in by:
            continue
        d, r = by[default], by["random"]
        wins = sum(a["hypervolume"] > b["hypervolume"] for a in groups[(model, backend, default)]
                   for b in groups[(model, backend, "random")] if a["seed"] == b["seed"]
                   and a.get("hypervolume") is not None and b.get("hypervolume") is not None)
        beats = d["hv_mean"] is not None and r["hv_mean"] is not None and d["hv_mean"] > r["hv_mean"]
        verdicts.append({"model": model, "backend": backend, "default": default, "default_hv": d["hv_mean"],
                         "random_hv": r["hv_mean"], "beats_random": beats, "seed_wins": wins,
                         "default_hv_near": d["hv_near_mean"], "random_hv_near": r["hv_near_mean"],
                         "seeds": len(d["seeds"])})
    return summary, verdicts


def fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def print_report(out: dict) -> None:
    print(f"\n{out['trials']} trials a search, eval proxy, profile {out['profile']}; hypervolume against "
          f"accuracy 0 (hv_near: fp32 − {out['args']['near']}) and {out['args']['margin']} × the fp32 baseline's "
          "latency and size (per model)")
    for model, ref in out["references"].items():
        odd = ref["runs_pricing_fp32_differently"]
        print(f"  {model}: fp32 {ref['fp32_accuracy']:.4f}, {ref['fp32_latency_ms']:.4f} ms, "
              f"{ref['fp32_size_bytes']:.0f} B" + (f"; fp32 priced differently in {odd}" if odd else ""))
    print("\n| model | backend | sampler | hypervolume (mean ± sd) | per seed | hv_near | fastest ≤1 pt ms | "
          "wall s (mean) | trials s | failed trials |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in out["summary"]:
        key = (s["model"], s["backend"], s["sampler"])
        per_seed = " / ".join(fmt(r.get("hypervolume"), ".4f") for r in out["rows"]
                              if (r["model"], r["backend"], r["sampler"]) == key)
        hv = f"{s['hv_mean']:.4f} ± {s['hv_stdev']:.4f}" if s["hv_mean"] is not None else "–"
        err = f" ({'; '.join(s['errors'])})" if s["errors"] else ""
        print(f"| {s['model']} | {s['backend']} | {s['sampler']} | {hv} | {per_seed} | "
              f"{fmt(s['hv_near_mean'], '.4f')} | {fmt(s['fastest_1pt_ms_mean'], '.4f')} | {s['wall_s_mean']:.1f} | "
              f"{fmt(s['trials_s_mean'], '.1f')} | {s['failed_trials']}{err} |")
    if out["ray_note"]:
        print(out["ray_note"])
    if out["ray_start_s"] is not None:
        print(f"Ray start-up (once, not in the rows): {out['ray_start_s']:.1f} s")
    print()
    for v in out["verdicts"]:
        word = "BEATS" if v["beats_random"] else "does NOT beat"
        print(f"verdict {v['model']} / {v['backend']}: the default sampler {v['default']} {word} random "
              f"(mean hypervolume {fmt(v['default_hv'], '.4f')} vs {fmt(v['random_hv'], '.4f')}; ahead on "
              f"{v['seed_wins']} of {v['seeds']} seeds; hv_near {fmt(v['default_hv_near'], '.4f')} vs "
              f"{fmt(v['random_hv_near'], '.4f')})")
    if out["verdicts"]:
        where = "on every model and backend measured" if out["default_beats_random"] else "everywhere"
        word = "beats" if out["default_beats_random"] else "does NOT beat"
        print(f"overall: the default sampler {out['default_sampler']} {word} random {where}")


def parse_args() -> argparse.Namespace:
    from automc.api import default_profile_name
    from automc.errors import UserInputError
    from automc.search.samplers import SAMPLERS, check_sampler_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials of every search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["demo-cnn", "resnet-small"])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help="in-process rows")
    parser.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--ray-samplers", nargs="+", default=[default_sampler(), "random"], help="Ray rows")
    parser.add_argument("--ray-jobs", type=int, default=2, help="Ray actors (trials at a time), one CPU each")
    parser.add_argument("--profile", default=None, help="default: this host's x86 profile")
    parser.add_argument("--margin", type=float, default=1.1, help="reference = margin × fp32 latency and size")
    parser.add_argument("--near", type=float, default=0.05,
                        help="hv_near counts points within this accuracy loss of fp32 (fraction)")
    parser.add_argument("--calibration-budget", type=float, default=600.0,
                        help="seconds the untimed warm-up may calibrate a model the store lacks")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of this process")
    parser.add_argument("--runs", type=Path, default=None, help="keep the run directories here (default: a "
                        "temporary directory, removed at the end); must not hold runs already")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    try:
        for name in {*args.samplers, *args.ray_samplers}:
            check_sampler_name(name)
    except UserInputError as e:
        parser.error(str(e))
    if args.trials < 1 or args.ray_jobs < 1:
        parser.error("--trials and --ray-jobs must be ≥ 1")
    if args.runs is not None and args.runs.exists() and any(args.runs.iterdir()):
        parser.error(f"--runs {args.runs}: holds runs already; a resumed search would time only its missing trials")
    if "ray" not in args.backends:
        args.ray_samplers = []
    args.profile = args.profile or default_profile_name()
    return args


def print_plan(args, plan: list, lacking: list[str], expected: float, ray_note: str) -> None:
    local = " ".join(args.samplers) if "local" in args.backends else "-"
    print(f"{len(plan)} searches of {args.trials} trials ({', '.join(args.models)}; seeds "
          f"{' '.join(map(str, args.seeds))}; local: {local}; ray ×{args.ray_jobs}: "
          f"{' '.join(args.ray_samplers) or '-'}), profile {args.profile}, "
          f"AUTOMC_CACHE={os.environ.get('AUTOMC_CACHE', '~/.cache/automc')}")
    if lacking:
        print(f"the measurement store lacks {', '.join(lacking)}: the warm-up calibrates each, up to "
              f"{args.calibration_budget:.0f} s (--calibration-budget), before anything is timed")
    print(f"expected time: about {expected / 60:.0f} min on a quiet 2-core host (an estimate; updated after "
          "every search)", flush=True)
    if ray_note:
        print(ray_note)


def main() -> None:
    import automc
    from automc._host import host_description

    args = parse_args()
    torch.set_num_threads(args.torch_threads)
    warnings.filterwarnings("ignore")
    own_tmp = tempfile.TemporaryDirectory(prefix="search-quality-") if args.runs is None else None
    root = Path(own_tmp.name) if own_tmp is not None else args.runs
    began = time.perf_counter()
    print("loading the models (training any not cached yet), checking the store", flush=True)
    models = load_models(args)
    lacking = [name for name, (_, _, lack) in models.items() if lack]
    plan = make_plan(args)
    expected = estimate_s(args, plan, len(lacking))
    ray_note = ""
    if "ray" in args.backends and set(args.ray_samplers) != set(args.samplers):
        ray_note = (f"Ray rows: samplers {', '.join(args.ray_samplers)} only (--ray-samplers; the full registry on "
                    "Ray would double the budget)")
    print_plan(args, plan, lacking, expected, ray_note)
    out = {"host": host_description(), "cpus": os.cpu_count(), "profile": args.profile,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "trials": args.trials,
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "default_sampler": default_sampler(), "expected_s": expected, "calibrated_in_warmup": lacking,
           "ray_note": ray_note, "ray_start_s": None, "warmup_s": {}, "references": {}, "rows": [],
           "summary": [], "verdicts": [], "default_beats_random": None, "load_avg_start": os.getloadavg()}

    def save() -> None:
        score_rows(out["rows"], out["references"], args.margin, args.near)
        out["summary"], out["verdicts"] = summarize(out["rows"], out["default_sampler"])
        out["default_beats_random"] = bool(out["verdicts"]) and all(v["beats_random"] for v in out["verdicts"])
        out["elapsed_s"] = time.perf_counter() - began
        out["load_avg_end"] = os.getloadavg()
        args.out.write_text(json.dumps(out, indent=1))

    try:
        if "ray" in args.backends:
            out["ray_start_s"] = start_ray(args.ray_jobs)
            print(f"Ray started on 127.0.0.1 with {args.ray_jobs} CPUs in {out['ray_start_s']:.1f} s", flush=True)
        for model, (source, built, _) in models.items():
            start = time.perf_counter()
            automc.search(built.model, built.example_input, built.evaluate, profile=args.profile, n_trials=0,
                          calib_batches=built.calib_batches, run_dir=root / f"{model}-warmup", progress=False,
                          proxy="eval", source=source, calibration_budget_s=args.calibration_budget)
            out["warmup_s"][model] = time.perf_counter() - start
            print(f"{model}: warm-up (calibration if needed, imports, lowering) {out['warmup_s'][model]:.0f} s",
                  flush=True)
        done_s = 0.0
        for i, (model, backend, seed, sampler) in enumerate(plan):
            source, built, _ = models[model]
            row = run_one(built, source, args, model, backend, seed, sampler,
                          root / f"{model}-{backend}-{sampler}-s{seed}")
            out["rows"].append(row)
            save()
            done_s += row["wall_s"]
            # the estimate for what is left, scaled by how the searches so far compared with theirs
            left = search_s(args, plan[i + 1:]) * done_s / search_s(args, plan[:i + 1])
            print(f"[{i + 1}/{len(plan)}] {model} {backend} {sampler} seed {seed}: {row['wall_s']:.1f} s, "
                  f"{row.get('completed', 0)} completed, {row.get('failed', 0)} failed, hypervolume "
                  f"{fmt(row.get('hypervolume'), '.4f')}" + (f", ERROR {row['error']}" if row["error"] else "")
                  + f"; about {left / 60:.0f} min left", flush=True)
    finally:
        if "ray" in args.backends:
            import ray

            ray.shutdown()
        if own_tmp is not None:
            own_tmp.cleanup()
    save()
    print_report(out)
    print(f"\nelapsed {out['elapsed_s'] / 60:.1f} min (expected {expected / 60:.0f}); wrote {args.out}")


if __name__ == "__main__":
    main()
