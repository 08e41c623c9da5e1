"""The search's progress bar: trials done of all, the front's size and its hypervolume."""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from automc.search.pareto import OBJECTIVES, front_trials, hypervolume, reference_point


class SearchProgressBar:
    """Trials done / total, current front size and normalised hypervolume, redrawn per trial."""

    def __init__(self, n_trials: int, done: int, on: bool) -> None:
        self._on = on
        self._progress = Progress(
            TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
            TextColumn("front {task.fields[front]} · HV {task.fields[hv]}"), TimeElapsedColumn(),
        )
        self._task = self._progress.add_task("search", total=n_trials, completed=done, front=0, hv="–")

    def __enter__(self) -> "SearchProgressBar":
        if self._on:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._on:
            self._progress.stop()

    def update(self, study: optuna.Study, done: int) -> None:
        """Redraw after a trial: ``done`` trials finished in the run (every search on it)."""
        if not self._on:
            return
        # Values only (no candidate parsing): this runs after every trial and must stay cheap.
        front = front_trials(study)
        hv = "–"
        if front:
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            # Reference from all completed trials: the fp32 baseline runs first and is usually
            # the slowest and largest, so the reference (and the HV scale) stays put.
            ref = reference_point(pd.DataFrame([t.values for t in complete], columns=list(OBJECTIVES)))
            hv = f"{hypervolume(pd.DataFrame([t.values for t in front], columns=list(OBJECTIVES)), ref):.3f}"
        self._progress.update(self._task, completed=done, front=len(front), hv=hv)
