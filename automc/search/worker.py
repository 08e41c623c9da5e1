"""What a search worker does: score candidates with a scorer it builds once, and report each
outcome (or its failure, with the reason) back to the process that owns the study.

Workers never write to the run directory, the measurement store or the tuning database: the
driver records every trial in the journal, and a worker whose store lacks the measurements the
driver searched with fails its trials with a reason naming the store, instead of measuring.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from automc.types import Candidate, Evaluation

Score = Callable[[Candidate], Evaluation]
ScorerFactory = Callable[[], Score]


@dataclass(frozen=True)
class WorkerResult:
    """One scored candidate: its ``evaluation``, or ``error`` ("Type: message") when scoring
    raised; ``worker`` says where it ran (host, pid, and the Ray node id on Ray)."""

    evaluation: Evaluation | None
    error: str | None
    worker: dict[str, Any] = field(default_factory=dict)


def worker_identity(**extra: Any) -> dict[str, Any]:
    """Host name and pid of this process, plus ``extra`` (e.g. a Ray node id)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **extra}


def score_safely(score: Score, candidate: Candidate, identity: dict[str, Any]) -> WorkerResult:
    """``score(candidate)`` as a :class:`WorkerResult`: an exception becomes the trial's reason,
    formatted as the in-process runner records it."""
    try:
        return WorkerResult(score(candidate), None, identity)
    except Exception as e:  # noqa: BLE001 — any failure of a candidate is that trial's result
        return WorkerResult(None, f"{type(e).__name__}: {e}", identity)


@dataclass(frozen=True)
class RunScorer:
    """A picklable recipe for a run's scorer, rebuilt from its ``run.json`` on a worker that
    cannot inherit the driver's (a Ray actor, possibly on another machine).

    ``info`` is the run's ``run.json``; ``run_dir`` where its kept files (a ``.pt2`` program) are.
    """

    info: dict[str, Any]
    run_dir: str

    def __call__(self) -> Score:
        from automc.accuracy import make_proxy
        from automc.api import prepare
        from automc.latency.calibrate import predictor_for
        from automc.latency.store import MeasurementStore
        from automc.model.source import ModelSource, load_model
        from automc.search.objective import make_scorer

        info = self.info
        built = load_model(ModelSource.from_run_info(info), run_dir=Path(self.run_dir))
        ctx = prepare(built.model, built.example_input, built.evaluate, info["profile_source"], info["space_source"],
                      built.calib_batches, built.train_batches, info.get("min_accuracy"))
        store = MeasurementStore(ctx.profile)
        predictor = predictor_for(ctx.model, ctx.example_input, ctx.profile, store)
        expected = info.get("latency_source")
        if expected is not None and predictor.source != expected:
            # Mixing calibrated and roofline latencies in one front would be silently wrong.
            raise RuntimeError(f"this worker's latencies would be '{predictor.source}', the search's are "
                               f"'{expected}': its measurement store {store.path} lacks the profile "
                               f"'{ctx.profile.name}' measurements; copy the driver's store there (same "
                               "AUTOMC_CACHE layout) or run `automc calibrate` on the driver first")
        proxy = make_proxy(info["proxy"], ctx.proxy_inputs())
        return make_scorer(ctx.model, ctx.example_input, ctx.calib_batches, proxy, predictor, ctx.profile)
