"""A run's figures as files: interactive HTML sharing one copy of plotly.js, and static PNGs
rendered by kaleido with the system's Chromium (Debian's ``chromium``; ``make sysdeps``)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import plotly.graph_objects as go

from automc.report.figures import hypervolume_figure, layers_figure
from automc.report.plot import pareto_figure

PNG_SIZE = (1100, 650)  # pixels


@dataclass(frozen=True)
class WrittenFigures:
    """Paths written; ``png_note`` says why the PNGs are missing, empty when they were written."""

    paths: tuple[Path, ...]
    png_note: str = ""


def chromium_path() -> str | None:
    """The Chromium kaleido renders with, if this host has one."""
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def write_html(fig: go.Figure, path: Path) -> Path:
    """Write ``fig`` as HTML loading plotly.js from one shared file beside the run directories
    (``../plotly-<version>.min.js``, written once), not a 4.8 MB inlined copy per run; it opens
    offline as long as the runs stay together."""
    import plotly

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shared = path.parent.parent / f"plotly-{plotly.__version__}.min.js"
    if not shared.exists():
        from plotly.offline import get_plotlyjs

        shared.write_text(get_plotlyjs())
    fig.write_html(str(path), include_plotlyjs=f"../{shared.name}", full_html=True)
    return path


def write_png(fig: go.Figure, path: Path) -> Path:
    """Render ``fig`` to a PNG of ``PNG_SIZE`` pixels with kaleido (needs Chromium)."""
    fig.write_image(str(path), format="png", width=PNG_SIZE[0], height=PNG_SIZE[1])
    return Path(path)


def write_run_figures(run_dir: Path, study: optuna.Study, trials: pd.DataFrame, front: pd.DataFrame,
                      png: bool = True) -> WrittenFigures:
    """``pareto``, ``layers`` (per-layer choices of the front) and ``hypervolume`` (history) as
    ``.html`` in ``run_dir``, and as ``.png`` when ``png`` and Chromium is installed."""
    figures = {"pareto": pareto_figure(trials, front), "layers": layers_figure(front),
               "hypervolume": hypervolume_figure(study)}
    paths = [write_html(fig, run_dir / f"{name}.html") for name, fig in figures.items()]
    note = "" if chromium_path() else "no PNG figures: Chromium is not installed (apt-get install chromium)"
    if png and not note:
        paths += [write_png(fig, run_dir / f"{name}.png") for name, fig in figures.items()]
    return WrittenFigures(tuple(paths), note if png else "")
