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
