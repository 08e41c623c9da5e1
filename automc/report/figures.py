"""The run's other figures: the per-layer choices of the front points and the hypervolume history.

Both are drawn from what the run directory stores (the front frame, the study), never from the
model.
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go

from automc.types import FP32_BITS, Candidate

# reference point margin past the worst latency and size seen, so the worst points still count
_REFERENCE_MARGIN = 1.1


def layers_figure(front: pd.DataFrame) -> go.Figure:
    """A heatmap of each front point's per-layer choices: one row per layer, one column per
    front trial (fastest first); colour is the weight bit-width, the cell text the full choice
    (``W/A``, pruned share ``p``, rank fraction ``r``). Hover gives the trial's accuracy and
    latency (ms).

    >>> layers_figure(pareto_frame(study)).write_html("layers.html")  # doctest: +SKIP
    """
    candidates = [Candidate.from_dict(c) for c in front.get("candidate", pd.Series(dtype=object))]
    layer_names = sorted({name for c in candidates for name in c.layers})
    bits = np.full((len(layer_names), len(candidates)), np.nan)
    text = np.full(bits.shape, "", dtype=object)
    for j, cand in enumerate(candidates):
        for i, name in enumerate(layer_names):
            choice = cand.choice(name)
            bits[i, j] = choice.w_bits
            parts = [f"{choice.w_bits}/{choice.a_bits}" if choice.quantized else "fp32"]
            parts += [f"p{choice.prune:g}"] if choice.prune else []
            parts += [f"r{choice.rank:g}"] if choice.rank < 1 else []
            text[i, j] = " ".join(parts)
    columns = [f"trial {int(t)}" for t in front.get("trial", [])]
    hover = [[f"{columns[j]}: {acc * 100:.2f}% · {lat:.3g} ms" for j, (acc, lat) in
              enumerate(zip(front["accuracy"], front["latency_ms"]))] for _ in layer_names] if columns else None
    fig = go.Figure(go.Heatmap(
        z=bits, x=columns, y=layer_names, text=text, texttemplate="%{text}", customdata=hover,
        hovertemplate="%{y}: %{text}<br>%{customdata}<extra></extra>",
        colorscale="Viridis_r", zmin=2, zmax=FP32_BITS, colorbar=dict(title=dict(text="weight bits")),
    ))
    fig.update_layout(title=dict(text="Per-layer choices of the Pareto front (fastest first)"),
                      template="plotly_white", height=max(400, 28 * len(layer_names) + 160),
                      yaxis=dict(autorange="reversed"))
    return fig


def hypervolume_figure(study: optuna.Study) -> go.Figure:
    """Hypervolume of the front after each trial (Optuna's ``plot_hypervolume_history``) in
    (accuracy, latency ms, size bytes), against the reference point (accuracy 0, 1.1 × the
    worst latency and size of any completed trial)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]
    if not done:
        return go.Figure().update_layout(title=dict(text="Hypervolume history: no completed trial yet"))
    reference = [0.0] + [_REFERENCE_MARGIN * max(t.values[i] for t in done) for i in (1, 2)]
    with warnings.catch_warnings():  # experimental in Optuna, and chosen knowingly: not the user's concern
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fig = optuna.visualization.plot_hypervolume_history(study, reference_point=reference)
    fig.update_layout(title=dict(text="Hypervolume history (accuracy ↑, latency ↓, size ↓)"), template="plotly_white")
    return fig
