"""The calibration progress bar the CLI and the Python API both draw (rich)."""

from __future__ import annotations

import time
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(console: Console | None = None) -> Progress:
    """A rich progress display: description, bar, done/total, elapsed."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def calibration_progress(progress: Progress, budget_s: float) -> Callable[[int, int, object], None]:
    """A calibration callback drawing candidate models done of all, and what is left of the
    budget (s). The bar appears with the first model: a search that needs no calibration draws none."""
    tasks = []
    start = time.perf_counter()

    def update(i: int, n: int, candidate: object) -> None:
        if not tasks:
            tasks.append(progress.add_task("calibrating: candidate models", total=n))
        left = max(0.0, budget_s - (time.perf_counter() - start))
        progress.update(tasks[0], completed=i, total=n,
                        description=f"calibrating: candidate models ({left / 60:.1f} min of budget left)")

    return update
