"""How this host's speed moves over minutes: the evidence behind the shipped-records check's
window (``automc.latency.shipped.WINDOW_S``).

Every ``--pause`` seconds for ``--minutes``, times the shipped check's reference probes
(``automc.latency.shipped.reference_executables``: compiled with the profile's tuning database, on
its threads, each timed as calibration times a whole: ``Timing.latency_ms``) and a 384×384 fp32
matmul in torch on 1 and on 2 threads (fastest of 30 calls). Prints, per series, the fastest,
median and slowest sample and the share of samples more than 10% over the fastest; writes
every sample to experiments/host_phases.csv and the table to experiments/host_phases.json.
Run it alone: anything beside it is a phase of its own.

    .venv/bin/python experiments/host_phases.py [--profile x86-vnni] [--minutes 10] [--pause 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent


def matmul_ms(threads: int, a: torch.Tensor) -> float:
    """Fastest of 30 calls of a @ a on ``threads`` torch threads (ms)."""
    torch.set_num_threads(threads)
    fastest = float("inf")
    for _ in range(30):
        start = time.perf_counter()
        a @ a
        fastest = min(fastest, time.perf_counter() - start)
    return fastest * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="x86-vnni")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between samples")
    args = parser.parse_args()

    from automc.latency.measure import time_executable
    from automc.latency.shipped import reference_executables
    from automc.profiles import load_profile

    profile = load_profile(args.profile)
    references = [(f"probe{i} (ms)", executable, x)
                  for i, (_, executable, x) in enumerate(reference_executables(profile))]
    a = torch.randn(384, 384)
    rows = []
    start = time.monotonic()
    while time.monotonic() - start < args.minutes * 60:
        row = {"t_s": round(time.monotonic() - start, 1)}
        for name, executable, x in references:
            row[name] = time_executable(executable, [x], profile).latency_ms
        row["matmul 1 thread (ms)"] = matmul_ms(1, a)
        row["matmul 2 threads (ms)"] = matmul_ms(2, a)
        rows.append(row)
        print("  ".join(f"{k} {v:.3f}" if k != "t_s" else f"{v:6.0f} s" for k, v in row.items()), flush=True)
        time.sleep(args.pause)

    series = [k for k in rows[0] if k != "t_s"]
    table = {}
    for name in series:
        samples = [r[name] for r in rows]
        fastest = min(samples)
        table[name] = {"fastest": fastest, "median": statistics.median(samples), "slowest": max(samples),
                       "share over fastest +10%": sum(s > 1.1 * fastest for s in samples) / len(samples)}
    print(f"\n{len(rows)} samples over {rows[-1]['t_s']:.0f} s, {args.pause:g} s apart")
    print(f"{'series':24s} {'fastest':>9s} {'median':>9s} {'slowest':>9s} {'>+10%':>7s}")
    for name, t in table.items():
        print(f"{name:24s} {t['fastest']:9.3f} {t['median']:9.3f} {t['slowest']:9.3f} "
              f"{t['share over fastest +10%']:7.0%}")
    with open(HERE / "host_phases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (HERE / "host_phases.json").write_text(json.dumps(
        {"profile": args.profile, "minutes": args.minutes, "pause_s": args.pause, "samples": len(rows),
         "series": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
