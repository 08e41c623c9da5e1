"""The interactive Pareto chart: accuracy against latency, size as colour and marker size.

Inputs are the frames of :mod:`automc.search.pareto` (``trials_frame`` and ``pareto_frame``), so
the chart can be redrawn from a run directory without re-running anything.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

UNCALIBRATED = "uncalibrated"
UNCALIBRATED_NOTE = "UNCALIBRATED roofline estimate"
PROMOTED_NOTE = "● accuracy after a short recovery (promoted), ■ cheap proxy only"
KIB = 1024


def is_uncalibrated(*frames: pd.DataFrame) -> bool:
    """True when any row's latency comes from the roofline fallback, not from measurements."""
    return any("latency_source" in f and (f["latency_source"] == UNCALIBRATED).any() for f in frames)


def pareto_figure(trials: pd.DataFrame, front: pd.DataFrame) -> go.Figure:
    """Accuracy (%) against latency (ms): every trial faint grey (infeasible ones, under the
    accuracy floor or over a budget, greyer still and crossed), the front highlighted.

    Front markers grow and colour with size (KiB); hovering shows the trial number and its
    per-layer summary. Completed uniform baselines (``baseline`` column) are drawn as labelled
    diamonds. If any latency is ``uncalibrated``, both the title and the x axis say so.

    >>> fig = pareto_figure(trials_frame(study), pareto_frame(study))  # doctest: +SKIP
    >>> write_html(fig, run_dir / "pareto.html")  # doctest: +SKIP
    """
    fig = go.Figure()
    done = trials.dropna(subset=["accuracy", "latency_ms"]) if not trials.empty else trials
    infeasible = done["feasible"].eq(False).to_numpy(bool) if "feasible" in done else np.zeros(len(done), bool)
    for part, name, marker in ((done[~infeasible], "all trials", dict(color="rgba(150,150,150,0.35)", size=6)),
                               (done[infeasible], "infeasible (under the accuracy floor or over a budget)",
                                dict(color="rgba(190,190,190,0.3)", size=6, symbol="x-thin-open"))):
        if part.empty:
            continue
        fig.add_trace(go.Scatter(
            x=part["latency_ms"], y=part["accuracy"] * 100, mode="markers", name=name, marker=marker,
            customdata=np.column_stack([part["number"], _text(part, "summary")]),
            hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}<br>"
                          "%{y:.2f}% · %{x:.3g} ms<extra></extra>",
        ))
    if not front.empty:
        kib = front["size_bytes"].astype(float) / KIB
        span = float(kib.max() - kib.min()) or 1.0
        fig.add_trace(go.Scatter(
            x=front["latency_ms"], y=front["accuracy"] * 100, mode="lines+markers", name="Pareto front",
            line=dict(shape="hv", color="rgba(30,30,30,0.4)", width=1),
            # Marker area carries size too, so the chart still reads in greyscale.
            marker=dict(size=9 + 15 * (kib - kib.min()) / span, color=kib, colorscale="Viridis",
                        showscale=True, colorbar=dict(title=dict(text="size (KiB)")),
                        line=dict(color="black", width=0.5), symbol=_fidelity_symbols(front)),
            customdata=np.column_stack([front["trial"], _text(front, "summary"), kib, fidelity_text(front)]),
            hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}<br>%{y:.2f}% · %{x:.3g} ms"
                          " · %{customdata[2]:.1f} KiB<br>%{customdata[3]}<extra></extra>",
        ))
    base = _baselines(done)
    if not base.empty:
        fig.add_trace(go.Scatter(
            x=base["latency_ms"], y=base["accuracy"] * 100, mode="markers+text", name="uniform baselines",
            text=base["baseline"], textposition="top center",
            marker=dict(symbol="diamond-open", size=14, color="crimson", line=dict(width=2)),
            customdata=np.column_stack([base["number"], base["baseline"]]),
            hovertemplate="baseline %{customdata[1]} (trial %{customdata[0]})<br>"
                          "%{y:.2f}% · %{x:.3g} ms<extra></extra>",
        ))
    uncal = is_uncalibrated(trials, front)
    x_title = f"latency (ms, {UNCALIBRATED_NOTE})" if uncal else "latency (ms, predicted)"
    title = "automc Pareto front" + (f" — latency is an {UNCALIBRATED_NOTE}" if uncal else "")
    if _multi_fidelity(front):
        title += f" — {PROMOTED_NOTE}"
    fig.update_layout(title=dict(text=title), xaxis=dict(title=dict(text=x_title)),
                      yaxis=dict(title=dict(text="accuracy (%)")), template="plotly_white",
                      legend=dict(orientation="h", y=-0.15))
    return fig


def _multi_fidelity(frame: pd.DataFrame) -> bool:
    return "fidelity" in frame and frame["fidelity"].notna().any()


def _promoted(frame: pd.DataFrame) -> np.ndarray:
    if "accuracy_promoted" not in frame:
        return np.zeros(len(frame), bool)
    return frame["accuracy_promoted"].notna().to_numpy(bool)


def fidelity_text(frame: pd.DataFrame) -> np.ndarray:
    """Per row: which proxy its accuracy comes from, with the cheap number of a promoted point
    (e.g. ``"finetune (eval 52.75%)"``); empty outside a multi-fidelity search."""
    if not _multi_fidelity(frame):
        return np.full(len(frame), "", dtype=object)
    out = []
    for fid, cheap, promoted in zip(frame["fidelity"], frame["accuracy_proxy"], _promoted(frame)):
        if not isinstance(fid, str):
            out.append("")
        elif promoted and cheap is not None and not pd.isna(cheap):
            out.append(f"{fid} (proxy {100 * float(cheap):.2f}%)")
        else:
            out.append(fid)
    return np.array(out, dtype=object)


def _fidelity_symbols(front: pd.DataFrame) -> list[str] | str:
    # a point scored by the cheap proxy only is a square: its accuracy is the less trusted one
    if not _multi_fidelity(front):
        return "circle"
    return ["circle" if p else "square" for p in _promoted(front)]


def _text(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.full(len(frame), "", dtype=object)
    return frame[column].fillna("").astype(str).to_numpy(dtype=object)


def _baselines(trials: pd.DataFrame) -> pd.DataFrame:
    if trials.empty or "baseline" not in trials:
        return trials.iloc[0:0]
    base = trials[trials["baseline"].notna() & (trials["baseline"].astype(str) != "")]
    return base.drop_duplicates(subset="baseline")
