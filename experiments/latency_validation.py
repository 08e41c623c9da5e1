"""Latency predictor vs end-to-end measurement on models it never saw (issue #3, DESIGN §7).

The profile is calibrated on ``--probes`` random probe networks (``latency.probes``), then for
each *calibrated* architecture on its uniform baselines and ``--calib-random`` random
candidates (seed 0), exactly as ``automc calibrate`` does. Then
``--per-model`` fresh random candidates (``--seed``, 1 unless told; never measured before) of every architecture,
including the *held-out* ones whose candidates calibration never sampled, are compressed,
compiled end to end with the profile's tuning database and measured whole on this host,
interleaved (``--rounds`` rounds, every model once a round: the host's noise comes in bursts);
the predictor's estimate is compared with the measurement. Nothing measured here feeds the store.

Baselines in the same table:
- FLOPs: latency = c · MACs, c fitted (least squares) on the calibration's whole-model
  measurements;
- per-layer lookup: Σ of the stored latency of each of the model's layer kernels, no overhead
  or graph-op model and no regressor (a kernel missing from the table is priced by the FLOPs
  coefficient).

Beside them, the measurement against itself: the fastest of the odd rounds against the fastest
of the even rounds, two independent re-measurements of every model. Their agreement (τ above
all) is the noise floor of this host's timing: pairs of models closer than it have no measurable
order, whatever the predictor. (Each half has half the rounds, so the floor is a little pessimistic.)

And the measurement against calibration's: the calibrated architectures' uniform baselines,
whose whole-model times calibration stored, are re-timed among the candidates. This shared VM's
speed drifts by several % over tens of minutes (other tenants), between calibration and
validation as much as anywhere: "stored vs re-measured now" shows how far, and
"automc predictor × host drift" scales every prediction by the median ratio now / stored of
its own architecture's baselines: the figure a predictor could reach on a host that kept its
speed. Per architecture, because the phases move them apart (in run K MobileNetV2's baselines
came back +9% at the median, the 0.1 ms models' +2% to +3%); a held-out architecture has no
baselines and is left as predicted. The plain predictor row stays the one the bars are read on.

With ``--measured CSV`` the models are not compiled again: the current predictor is re-scored
against the measurements a previous run recorded (same seeds, so the same candidates).

Usage (x86-vnni on this host; the recorded run O, 50 min with its calibration stored, 30 of
them timing because the host never settled; 27 min when it does within the first 12; from an
empty cache add the calibration, tuning database included: run C spent 34 of its 42 min on it):
    .venv/bin/python experiments/latency_validation.py --models demo-cnn,tiny-transformer,mobilenetv2 \
        --held-out resnet-small --calib-random 24 --per-model 14 --probes 96 --rounds 15 --minutes 12 \
        --settle-pct 5 --max-minutes 30 --seed 15
Prints a table; writes experiments/latency_validation.json (+ per-model rows in .csv).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import kendalltau, spearmanr

import automc.api as api
from automc.compress import apply_candidate
from automc.deploy.build import open_database
from automc.deploy.compile import compile_candidate
from automc.deploy.lower import kernel_specs
from automc.latency.calibrate import calibrate_model, calibrate_probes, model_key, predictor_for
from automc.latency.measure import time_executable
from automc.latency.store import MeasurementStore
from automc.model.zoo import load_builtin
from automc.profiles import load_profile
from automc.search.seeds import calibration_candidates
from automc.types import KernelSpec

OUT = Path(__file__).with_suffix(".json")


def flops_coefficient(store: MeasurementStore) -> float:
    """ms per MAC, least squares through the origin over the stored whole-model measurements."""
    pts = [(sum(KernelSpec.from_key(k).macs for k in r.kernels), r.latency_ms) for r in store.records() if r.kernels]
    macs, ms = np.array(pts, dtype=float).T
    return float((macs @ ms) / (macs @ macs))


def lookup_ms(kernels: list[KernelSpec], store: MeasurementStore, ms_per_mac: float) -> float:
    total = 0.0
    for k in kernels:
        if not k.is_layer:  # a per-layer table has no entry for the graph's other work
            continue
        hit = store.get(k.key)
        total += hit.latency_ms if hit is not None else ms_per_mac * max(k.macs, 1)
    return total


def metrics(pred: np.ndarray, meas: np.ndarray) -> dict[str, float]:
    err = (pred - meas) / meas
    return {"within_10": float(np.mean(np.abs(err) <= 0.10)), "within_5": float(np.mean(np.abs(err) <= 0.05)),
            "rmspe": float(np.sqrt(np.mean(err ** 2))), "kendall_tau": float(kendalltau(pred, meas).statistic),
            "spearman_rho": float(spearmanr(pred, meas).statistic), "n": int(len(meas))}


def time_interleaved(compiled: list, rows: list[dict], profile, rounds: int, repeat: int, min_repeat_ms: float,
                     minutes: float = 0.0, settle_pct: float | None = None, max_minutes: float = 0.0) -> dict:
    """Time every compiled model in ``rounds`` rounds (more while less than ``minutes`` have
    passed), each model once a round (``repeat`` runs of ≥ ``min_repeat_ms`` ms); a model's
    latency is the fastest run of all rounds, the statistic the store holds
    (``measure.Timing.latency_ms``), and its spread that of its round minima. Interleaved
    because this host's noise comes in bursts of seconds (other tenants of the VM host): timed
    back to back, a model caught in a burst was off by up to 50%, whatever its repeats. Spread
    over minutes because it also comes in phases of minutes: a MobileNetV2 took 1.93 ms
    throughout one and 1.66 ten minutes later.

    With ``settle_pct``, rounds go on past ``minutes`` (up to ``max_minutes``) while the rows
    holding a ``stored_ms`` (calibration's own models) of some architecture are, at their
    median, still more than ``settle_pct`` % slower than calibration stored them: a run of 27
    minutes can sit wholly in a slow phase (runs J and K: MobileNetV2's baselines +7% to +11%),
    and the fastest round of a longer window is what the store holds for its own records.
    Only the reference models decide when to stop, never the candidates, so every model's
    statistic stays the fastest round of one common window. Returns the window: minutes
    timed, rounds (and those of the unextended window), the slowest architecture's median
    ratio (fastest now / stored) and whether it settled within ``settle_pct``."""
    import tvm
    from tvm import relax

    from automc.devices import device_runner, use_profile_threads
    from automc.devices.timing import time_vm

    if not device_runner(profile).on_this_host:  # one at a time on the device
        for idx, ex, x in compiled:
            whole = time_executable(ex, [x], profile)
            rows[idx].update(measured_ms=whole.latency_ms, spread=whole.spread)
        return {}
    tuning = profile.tuning.model_copy(update={"repeat": repeat, "min_repeat_ms": min_repeat_ms})
    timed = profile.model_copy(update={"tuning": tuning})
    use_profile_threads(profile)
    dev = tvm.cpu()
    runs = []
    for idx, ex, x in compiled:
        vm = relax.VirtualMachine(ex, dev)
        args = [tvm.runtime.tensor(x, dev)]
        vm["main"](*args)  # warm-up: allocation and page faults
        runs.append((idx, vm, args))
    samples: dict[int, list[float]] = {idx: [] for idx, _, _ in runs}
    stored = {idx: rows[idx]["stored_ms"] for idx, _, _ in runs if "stored_ms" in rows[idx]}

    def host_ratio() -> float:
        """Calibration's models, fastest so far / stored: the median of each architecture's,
        the slowest architecture's. The phases move architectures apart (run K: MobileNetV2's
        +8% to +11%, the demo's and the transformer's +1% to +3% at the median)."""
        if not stored or not samples[next(iter(stored))]:
            return 1.0
        now = pd.DataFrame([{"model": rows[i]["model"], "stored_ms": ms, "measured_ms": min(samples[i])}
                            for i, ms in stored.items()])
        return max(drift_by_architecture(now).values())

    def unsettled() -> bool:
        return settle_pct is not None and host_ratio() > 1 + settle_pct / 100

    def in_base_window() -> bool:  # the window --rounds / --minutes ask for, before any settling
        return done < rounds or time.perf_counter() - start < minutes * 60

    start, done, base_rounds = time.perf_counter(), 0, None
    while in_base_window() or (unsettled() and time.perf_counter() - start < max_minutes * 60):
        done += 1
        for idx, vm, args in runs:
            samples[idx].append(time_vm(vm, dev, args, timed).latency_ms)
        if base_rounds is None and not in_base_window():
            base_rounds = done  # its minima are kept beside the settled ones, to compare
        if done % 5 == 0:
            print(f"  timing: {done} rounds, {(time.perf_counter() - start) / 60:.1f} min; calibration's models "
                  f"×{host_ratio():.3f} of stored (the slowest architecture's median)", flush=True)
    for idx, values in samples.items():
        # the fastest of the even and of the odd rounds: two independent re-measurements whose
        # agreement is the ceiling any predictor's ranking can be checked to (the noise floor)
        rows[idx].update(measured_ms=min(values), spread=(max(values) - min(values)) / float(np.median(values)),
                         even_rounds_ms=min(values[0::2]), odd_rounds_ms=min(values[1::2]),
                         unsettled_ms=min(values[:base_rounds or done]))
    ratio = host_ratio()
    return {"minutes": (time.perf_counter() - start) / 60, "rounds": done, "unsettled_rounds": base_rounds or done,
            "host_ratio": ratio, "settle_pct": settle_pct,
            "settled": ratio <= 1 + settle_pct / 100 if settle_pct is not None else None}


def reference_rows(calibrated: list[str], contexts: dict, profile, store: MeasurementStore, database,
                   recorded: pd.DataFrame | None, compiled: list, first_index: int) -> list[dict]:
    """The calibrated architectures' uniform baselines, whose whole-model times calibration
    stored: compiled here (appended to ``compiled``) to be re-timed beside the candidates, or
    read back from a ``--measured`` CSV. Their ratio now / stored is the host's drift since
    calibration. Their timing rows are numbered from ``first_index`` (after the candidates')."""
    refs: list[dict] = []
    for name in calibrated:
        b, ctx = contexts[name]
        baselines, _ = calibration_candidates(ctx.space, n_random=0)
        for i, cand in enumerate(baselines):
            m = apply_candidate(ctx.model, cand, b.example_input, b.calib_batches[:1]).eval()
            kernels = kernel_specs(m, b.example_input, profile)
            stored = store.get(model_key(kernels, b.example_input))
            if stored is None:
                continue
            row = {"model": name, "held_out": False, "candidate": i, "stored_ms": stored.latency_ms}
            if recorded is not None:
                if "reference" not in recorded:
                    continue
                hit = recorded[recorded.reference & (recorded.model == name) & (recorded.candidate == i)]
                if hit.empty:
                    continue
                row.update(measured_ms=float(hit.iloc[0].measured_ms))
            else:
                executable = compile_candidate(m, None, b.example_input, profile, database=database).executable
                compiled.append((first_index + len(refs), executable, b.example_input.numpy()))
            refs.append(row)
    return refs


def drift_by_architecture(ref: pd.DataFrame) -> dict[str, float]:
    """Each calibrated architecture's host drift (a ratio): the median of re-measured now /
    stored over its own calibration baselines (``ref``)."""
    if ref.empty:
        return {}
    return {str(a): float(r) for a, r in (ref.measured_ms / ref.stored_ms).groupby(ref.model).median().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="demo-cnn", help="calibrated architectures, comma-separated")
    ap.add_argument("--held-out", default="resnet-small", help="architectures calibration never samples")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--space", default="default")
    ap.add_argument("--calib-random", type=int, default=24)
    ap.add_argument("--probes", type=int, default=24, help="random probe networks calibrated first (0: none)")
    ap.add_argument("--calib-passes", type=int, default=1,
                    help="passes of calibration timing (2 or more: the later ones re-time everything stored, "
                         "as `automc calibrate --retime`; the fastest of the passes counts)")
    ap.add_argument("--per-model", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1,
                    help="seed of the fresh candidates (calibration samples seed 0): a new seed, new models")
    ap.add_argument("--budget", type=float, default=1800.0, help="calibration budget per model, s")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of timing, each model once a round (interleaved)")
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="time more rounds until this many minutes have passed (the host's phases last minutes)")
    ap.add_argument("--settle-pct", type=float, default=None,
                    help="after --minutes, time more rounds while calibration's own models run more than this "
                         "%% slower than stored (the host in a slow phase), up to --max-minutes")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="the cap on timing with --settle-pct")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs of a model in one round (the fastest counts)")
    ap.add_argument("--min-repeat-ms", type=float, default=10.0, help="minimum length of one timed run, ms")
    ap.add_argument("--measured", default=None,
                    help="a CSV this script wrote: re-score the current predictor against its measurements "
                         "(same models and seeds) instead of compiling and measuring again")
    args = ap.parse_args()
    if args.rounds < 2:
        # the odd-vs-even re-measurement row needs a round of each parity
        ap.error(f"--rounds {args.rounds}: give 2 or more (the re-measurement row compares odd with even rounds)")
    if args.calib_passes < 1:
        ap.error(f"--calib-passes {args.calib_passes}: give 1 or more")
    torch.set_num_threads(1)  # torch only compresses here; the 2 cores belong to TVM's timings
    profile = load_profile(args.profile or api.default_profile_name())
    store = MeasurementStore(profile)
    calibrated = [m for m in args.models.split(",") if m]
    held_out = [m for m in args.held_out.split(",") if m]
    calib_report = {}
    contexts = {}
    for name in calibrated + held_out:
        b = load_builtin(name, verbose=True)
        contexts[name] = (b, api.prepare(b.model, b.example_input, b.evaluate, profile, args.space, b.calib_batches))
    if args.probes:
        t = time.perf_counter()
        rep = calibrate_probes(profile, n=args.probes, budget_s=args.budget, store=store)
        calib_report["probes"] = {**rep.__dict__, "wall_s": time.perf_counter() - t}
        print(f"calibrated probes: {rep}")
    for name in calibrated:
        b, ctx = contexts[name]
        first, sampled = calibration_candidates(ctx.space, n_random=args.calib_random, seed=0)
        t = time.perf_counter()
        rep = calibrate_model(ctx.model, b.example_input, first, sampled, profile, budget_s=args.budget, store=store)
        calib_report[name] = {**rep.__dict__, "wall_s": time.perf_counter() - t}
        print(f"calibrated {name}: {rep}")
    for p in range(2, args.calib_passes + 1):
        # one more pass over everything stored, as `automc calibrate --retime` does; the store as
        # it was before is kept beside it, so `--measured` can re-score the predictor on it
        kept = store.path.with_suffix(f".pass{p - 1}.jsonl")
        kept.write_bytes(store.path.read_bytes())
        t, retimed = time.perf_counter(), set()
        if args.probes:
            calibrate_probes(profile, n=args.probes, budget_s=args.budget, store=store, retimed=retimed)
        for name in calibrated:
            b, ctx = contexts[name]
            first, sampled = calibration_candidates(ctx.space, n_random=args.calib_random, seed=0)
            calibrate_model(ctx.model, b.example_input, first, sampled, profile, budget_s=args.budget, store=store,
                            retimed=retimed)
        calib_report[f"pass {p}"] = {"records_retimed": len(retimed), "wall_s": time.perf_counter() - t,
                                     "before_kept_in": str(kept)}
        print(f"calibration pass {p}: {len(retimed)} records timed again, {time.perf_counter() - t:.0f} s "
              f"(the store before it: {kept})")
    # each architecture's own predictor, as a search builds it: a calibrated one prices its graph
    # from its own stored wholes, a held-out one (none stored) from all
    predictors = {name: predictor_for(ctx.kernels, b.example_input, profile, store) for name, (b, ctx) in contexts.items()}
    ms_per_mac = flops_coefficient(store)
    database = open_database(profile)
    recorded = pd.read_csv(args.measured) if args.measured else None
    # (a CSV of this version also holds the re-timed calibration baselines, flagged "reference")
    candidates_recorded = recorded[~recorded.reference] if recorded is not None and "reference" in recorded else recorded
    rows, compiled = [], []
    for name in calibrated + held_out:
        b, ctx = contexts[name]
        _, fresh = calibration_candidates(ctx.space, n_random=args.per_model, seed=args.seed)
        for i, cand in enumerate(fresh):
            m = apply_candidate(ctx.model, cand, b.example_input, b.calib_batches[:1]).eval()
            kernels = kernel_specs(m, b.example_input, profile)
            t = time.perf_counter()
            predicted = predictors[name].predict(kernels)
            predict_us = (time.perf_counter() - t) * 1e6
            row = {"model": name, "held_out": name in held_out, "candidate": i, "kernels": len(kernels),
                   "macs": sum(k.macs for k in kernels), "predicted_ms": predicted, "predict_us": predict_us,
                   "flops_ms": ms_per_mac * sum(k.macs for k in kernels),
                   "lookup_ms": lookup_ms(kernels, store, ms_per_mac)}
            if recorded is not None:
                hit = candidates_recorded[(candidates_recorded.model == name)
                                          & (candidates_recorded.candidate == i)].iloc[0]
                timed = ("measured_ms", "spread", "even_rounds_ms", "odd_rounds_ms", "unsettled_ms")
                row.update({k: float(hit[k]) for k in timed if k in hit})
            else:
                executable = compile_candidate(m, None, b.example_input, profile, database=database).executable
                compiled.append((len(rows), executable, b.example_input.numpy()))
            rows.append(row)
    refs = reference_rows(calibrated, contexts, profile, store, database, recorded, compiled, len(rows))
    window = {}
    if compiled:
        window = time_interleaved(compiled, rows + refs, profile, args.rounds, args.repeat, args.min_repeat_ms,
                                  args.minutes, args.settle_pct, args.max_minutes)
        if window.get("settled") is False:
            print(f"WARNING: the host never came within {args.settle_pct}% of calibration's speed in "
                  f"{window['minutes']:.0f} min (×{window['host_ratio']:.3f}): a slow phase; read the drift rows",
                  flush=True)
    for r in rows:
        print(f"{r['model']:>16} #{r['candidate']:<3} measured {r['measured_ms']:.3f} ms  predicted {r['predicted_ms']:.3f} "
              f"({(r['predicted_ms'] / r['measured_ms'] - 1) * 100:+.1f}%)  FLOPs {r['flops_ms']:.3f}  "
              f"lookup {r['lookup_ms']:.3f}", flush=True)
    for r in refs:
        print(f"{r['model']:>16} baseline #{r['candidate']} (calibration's own) stored {r['stored_ms']:.3f} ms, "
              f"now {r['measured_ms']:.3f} ({(r['measured_ms'] / r['stored_ms'] - 1) * 100:+.1f}%)", flush=True)
    df = pd.DataFrame(rows)
    ref = pd.DataFrame(refs)
    pd.concat([df.assign(reference=False), ref.assign(reference=True)]).to_csv(OUT.with_suffix(".csv"), index=False)
    # the host's speed now against calibration's: this shared VM drifts by several % over tens of
    # minutes (another tenant's load), which no model of the code can predict; the calibration's
    # own models, re-timed beside the candidates, measure it
    drift = float(np.median(ref.measured_ms / ref.stored_ms)) if len(ref) else 1.0
    by_arch = drift_by_architecture(ref)
    df["drift_corrected_ms"] = df.predicted_ms * df.model.map(by_arch).fillna(1.0)
    table = {}
    subsets = [("all", df), ("calibrated archs", df[~df.held_out]), ("held-out archs", df[df.held_out])]
    subsets += [(name, df[df.model == name]) for name in calibrated + held_out]  # τ within one architecture
    for subset, part in subsets:
        if len(part) < 2:
            continue
        for method, col in [("automc predictor", "predicted_ms"), ("automc predictor × host drift", "drift_corrected_ms"),
                            ("FLOPs-proportional", "flops_ms"), ("per-layer lookup", "lookup_ms")]:
            table[f"{subset} | {method}"] = metrics(part[col].to_numpy(), part.measured_ms.to_numpy())
        if subset == "all" and "unsettled_ms" in part and (part.unsettled_ms != part.measured_ms).any():
            # what the run read before it went on timing for the host to settle
            table[f"{subset} | automc predictor, before settling"] = metrics(
                part.predicted_ms.to_numpy(), part.unsettled_ms.to_numpy())
        if "odd_rounds_ms" in part:  # how well the measurement agrees with itself: no predictor does better
            table[f"{subset} | re-measurement (odd vs even rounds)"] = metrics(part.odd_rounds_ms.to_numpy(),
                                                                             part.even_rounds_ms.to_numpy())
    if len(ref) > 1:  # stored whole models re-measured now: the drift between calibration and now
        table["calibration's own models | stored vs re-measured now"] = metrics(ref.stored_ms.to_numpy(),
                                                                               ref.measured_ms.to_numpy())
    print(f"\nprofile {profile.name}; {len(df)} models; predictor median {df.predict_us.median():.0f} µs a candidate "
          f"(kernels already extracted); host drift since calibration ×{drift:.3f} (median over {len(ref)} "
          f"calibration models re-measured now)")
    print(f"{'subset | method':<45} {'n':>3} {'±10%':>6} {'±5%':>6} {'RMSPE':>7} {'τ':>6} {'ρ':>6}")
    for k, v in table.items():
        print(f"{k:<45} {v['n']:>3} {v['within_10']:>6.0%} {v['within_5']:>6.0%} {v['rmspe']:>7.1%} "
              f"{v['kendall_tau']:>6.2f} {v['spearman_rho']:>6.2f}")
    OUT.write_text(json.dumps({"profile": profile.name, "args": vars(args), "calibration": calib_report,
                               "table": table, "median_spread": float(df.spread.median()), "host_drift": drift,
                               "host_drift_by_arch": by_arch, "timing_window": window},
                              indent=2))
    print(f"wrote {OUT} and {OUT.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
