"""How well each accuracy proxy ranks candidates by the accuracy they reach after recovery.

For a built-in model and the default space: the uniform baselines plus random candidates (and,
with ``--run``, that run's front points). Each candidate's reference is its accuracy after a
generous recovery (``--reference-steps`` of ``automc.recover``). Against it, for every proxy of
``automc.accuracy.PROXIES`` and, as baselines, #params, MACs and predicted latency: Kendall τ,
Spearman ρ, top-10 overlap, and the proxy's cost per candidate (s, wall).
Prints a table and writes experiments/proxy_fidelity-<model>.json.

    .venv/bin/python experiments/proxy_fidelity.py --model demo-cnn --n 60 --reference-steps 150 \
        --finetune-steps 5 10 20 [--reference-seeds 2 --resume]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

from automc import RecoveryBudget, recover
from automc._host import host_description
from automc.accuracy import PROXIES, make_proxy
from automc.accuracy.finetune_proxy import FinetuneProxy
from automc.api import prepare
from automc.compress import apply_candidate
from automc.latency.calibrate import predictor_for
from automc.latency.store import MeasurementStore
from automc.model.zoo import load_builtin
from automc.search.objective import make_scorer
from automc.search.seeds import calibration_candidates
from automc.types import Candidate


def _candidates(space, n: int, run: Path | None, seed: int) -> list[Candidate]:
    baselines, randoms = calibration_candidates(space, max(0, n), seed)
    out = baselines + randoms
    if run is not None:
        out += [Candidate.from_dict(r["candidate"]) for r in json.loads((run / "pareto.json").read_text())]
    unique: dict[str, Candidate] = {}
    for c in out:
        unique.setdefault(c.to_json(), c)
    return list(unique.values())[:n]


def _top_overlap(score: list[float], reference: list[float], k: int = 10) -> float:
    """Share of the reference's top-k candidates that are in the proxy's top-k."""
    k = min(k, len(score))
    top = lambda xs: set(sorted(range(len(xs)), key=lambda i: -xs[i])[:k])  # noqa: E731
    return len(top(score) & top(reference)) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-cnn")
    parser.add_argument("--profile", default="x86-avx2")
    parser.add_argument("--n", type=int, default=60, help="candidates (baselines first, then random)")
    parser.add_argument("--reference-steps", type=int, default=300)
    parser.add_argument("--run", type=Path, default=None, help="a run directory whose front points to add")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a host shared with other jobs)")
    parser.add_argument("--reference-seeds", type=int, default=1,
                        help="recoveries per candidate, seeds 0..k-1; the reference is their mean, and with "
                             "k ≥ 2 the seeds' agreement with each other is reported (the ceiling of any τ)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of the results file and compute only what they lack")
    parser.add_argument("--finetune-steps", type=int, nargs="*", default=[],
                        help="also score the finetune proxy at these step counts (rows 'finetune@k')")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    builtin = load_builtin(args.model, verbose=True)
    ctx = prepare(builtin.model, builtin.example_input, builtin.evaluate, args.profile, "default",
                  builtin.calib_batches, builtin.train_batches)
    predictor = predictor_for(ctx.kernels, ctx.example_input, ctx.profile, MeasurementStore(ctx.profile))
    shape = make_scorer(ctx.model, ctx.example_input, ctx.calib_batches, make_proxy("eval", ctx.proxy_inputs()),
                        predictor, ctx.profile)
    proxies = {name: make_proxy(name, ctx.proxy_inputs()) for name in PROXIES}
    proxies.update({f"finetune@{k}": FinetuneProxy(ctx.proxy_inputs(), steps=k) for k in args.finetune_steps})
    out = Path(__file__).with_name(f"proxy_fidelity-{args.model}.json")
    # --resume: rows of an earlier run are kept, and only what they lack is computed (e.g. a second
    # reference seed, or a proxy added since)
    earlier = ({json.dumps(r["candidate"], sort_keys=True): r for r in json.loads(out.read_text())["rows"]}
               if args.resume and out.exists() else {})
    rows = []
    for i, cand in enumerate(_candidates(ctx.space, args.n, args.run, args.seed)):
        row = earlier.get(json.dumps(cand.to_dict(), sort_keys=True), {"candidate": cand.to_dict()})
        if "params" not in row:
            ev = shape(cand)
            compressed = apply_candidate(ctx.model, cand, ctx.example_input, ctx.calib_batches)
            row.update(params=sum(p.numel() for p in compressed.parameters()), macs=ev.extras["macs"],
                       latency_ms=ev.latency_ms)
        for name, proxy in proxies.items():
            if name not in row:
                model = apply_candidate(ctx.model, cand, ctx.example_input, ctx.calib_batches)
                start = time.perf_counter()
                row[name] = proxy(model, cand)
                row[f"{name}_s"] = time.perf_counter() - start
        runs = row.setdefault("reference_runs", [row["reference"]] if "reference" in row else [])
        seconds = row.setdefault("reference_runs_s", [row["reference_s"]] if "reference_s" in row else [])
        for seed in range(len(runs), args.reference_seeds):
            compressed = apply_candidate(ctx.model, cand, ctx.example_input, ctx.calib_batches)
            start = time.perf_counter()
            report = recover(compressed, ctx.model, ctx.train_batches, ctx.calib_batches,
                             budget=RecoveryBudget(steps=args.reference_steps), evaluate=ctx.evaluate, seed=seed)
            runs.append(report.accuracy_after)
            seconds.append(time.perf_counter() - start)
        row["reference"], row["reference_s"] = statistics.mean(runs), statistics.mean(seconds)
        rows.append(row)
        scored = " ".join(f"{name} {row[name]:.4f}" for name in proxies)
        print(f"{i + 1:3d} {scored} reference {' '.join(f'{r:.4f}' for r in runs)} ({row['reference_s']:.0f} s)",
              flush=True)

    reference = [r["reference"] for r in rows]
    scores = {name: [r[name] for r in rows] for name in proxies}
    # more parameters / MACs / latency ↔ less compressed ↔ more accurate: positive is "right"
    scores.update({"#params": [r["params"] for r in rows], "MACs": [r["macs"] for r in rows],
                   "predicted latency": [r["latency_ms"] for r in rows]})
    metrics = {}
    for name, score in scores.items():
        cost = sum(r[f"{name}_s"] for r in rows) / len(rows) if name in proxies else None
        metrics[name] = {"kendall_tau": float(kendalltau(score, reference).statistic),
                         "spearman_rho": float(spearmanr(score, reference).statistic),
                         "top10_overlap": _top_overlap(score, reference), "seconds_per_candidate": cost}
    if all(len(r["reference_runs"]) >= 2 for r in rows):
        # how far two recoveries of one candidate agree: no proxy can rank the reference better
        first, second = [r["reference_runs"][0] for r in rows], [r["reference_runs"][1] for r in rows]
        metrics["reference seed 1 vs seed 0"] = {
            "kendall_tau": float(kendalltau(second, first).statistic),
            "spearman_rho": float(spearmanr(second, first).statistic),
            "top10_overlap": _top_overlap(second, first), "seconds_per_candidate": None}
    print(f"\n{args.model}: {len(rows)} candidates, reference = accuracy after {args.reference_steps} recovery "
          f"steps (mean of {min(len(r['reference_runs']) for r in rows)} seeds)")
    print(f"{'proxy':>26} {'τ':>6} {'ρ':>6} {'top-10':>7} {'s/cand':>8}")
    for name, m in metrics.items():
        cost = f"{m['seconds_per_candidate']:.3f}" if m["seconds_per_candidate"] is not None else "–"
        print(f"{name:>26} {m['kendall_tau']:6.2f} {m['spearman_rho']:6.2f} {m['top10_overlap']:7.1f} {cost:>8}")
    command = (f"experiments/proxy_fidelity.py --model {args.model} --profile {args.profile} --n {args.n} "
               f"--reference-steps {args.reference_steps} --reference-seeds {args.reference_seeds} "
               f"--threads {args.threads}"
               + (" --finetune-steps " + " ".join(map(str, args.finetune_steps)) if args.finetune_steps else ""))
    out.write_text(json.dumps({"command": command, "host": host_description(), "date": time.strftime("%Y-%m-%d %H:%M"),
                               "threads": args.threads, "metrics": metrics, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
