"""The Pareto front as a terminal table (``automc pareto RUN``)."""

from __future__ import annotations

import math

import pandas as pd
from rich.table import Table

from automc.report.plot import KIB, UNCALIBRATED, UNCALIBRATED_NOTE, fidelity_text, is_uncalibrated


def front_table(front: pd.DataFrame, measured: dict[int, float] | None = None) -> Table:
    """One row per front trial: accuracy (%), predicted latency (ms), size (KiB), config.

    ``measured`` maps trial number → measured latency (ms) and adds a column when given (trials
    not measured show "–"). Predicted latencies from the roofline fallback are marked
    ``uncal.`` and the caption says so.

    >>> from rich.console import Console  # doctest: +SKIP
    >>> Console().print(front_table(pareto_frame(study), measured={12: 3.4}))  # doctest: +SKIP
    """
    uncal = is_uncalibrated(front)
    table = Table(title="Pareto front", caption=f"latency: {UNCALIBRATED_NOTE}" if uncal else None,
                  caption_style="bold red")
    table.add_column("trial", justify="right")
    table.add_column("accuracy (%)", justify="right")
    table.add_column("latency ms (pred)", justify="right")
    if measured is not None:
        table.add_column("measured ms", justify="right")
    table.add_column("size KiB", justify="right")
    fidelity = fidelity_text(front)
    multi = any(fidelity)  # a multi-fidelity search: say where each accuracy comes from
    if multi:
        table.add_column("accuracy from")
    table.add_column("baseline")
    table.add_column("config summary")
    for row, fid in zip(front.itertuples(index=False), fidelity):
        latency = f"{row.latency_ms:.3f}"
        if getattr(row, "latency_source", None) == UNCALIBRATED:
            latency += " (uncal.)"
        cells = [str(int(row.trial)), f"{100 * row.accuracy:.2f}", latency]
        if measured is not None:
            m = measured.get(int(row.trial))
            cells.append(f"{m:.3f}" if m is not None else "–")
        cells.append(f"{row.size_bytes / KIB:.1f}")
        if multi:
            cells.append(fid)
        cells += [_blank(getattr(row, "baseline", None)),
                  _blank(getattr(row, "summary", None))]
        table.add_row(*cells)
    return table


def _blank(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def versus_int8(trials: pd.DataFrame, front: pd.DataFrame, max_loss: float = 0.01) -> str | None:
    """One line: the fastest front point within ``max_loss`` (a fraction: 0.01 = 1 point) of the
    fp32 baseline's accuracy, against the uniform int8 baseline (predicted latencies). None when
    the run has no completed fp32 or int8 baseline.

    >>> versus_int8(trials_frame(study), pareto_frame(study))  # doctest: +SKIP
    'fastest at ≤ 1 point loss: trial 41, 0.512 ms, 97.75% — 1.47× uniform int8 (0.753 ms, 98.50%)'
    """
    done = trials.dropna(subset=["accuracy", "latency_ms"]) if "baseline" in trials else trials.iloc[0:0]
    fp32, int8 = (done[done["baseline"] == name] for name in ("fp32", "int8"))
    if fp32.empty or int8.empty:
        return None
    floor = float(fp32["accuracy"].iloc[0]) - max_loss
    ok = front[front["accuracy"] >= floor - 1e-9].sort_values("latency_ms")
    if ok.empty:
        return None
    best, ref = ok.iloc[0], int8.iloc[0]
    speedup = float(ref["latency_ms"]) / float(best["latency_ms"])
    what = "uniform int8 itself" if int(best["trial"]) == int(ref["number"]) else f"trial {int(best['trial'])}"
    return (f"fastest at ≤ {100 * max_loss:g} point loss: {what}, {best['latency_ms']:.3f} ms, "
            f"{100 * best['accuracy']:.2f}% — {speedup:.2f}× uniform int8 ({ref['latency_ms']:.3f} ms, "
            f"{100 * ref['accuracy']:.2f}%)")
