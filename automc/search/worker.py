"""What a search worker does: score candidates with scorers it builds once (the cheap score of
every trial, and the costlier accuracy of a multi-fidelity search's promoted ones), and report
each outcome (or its failure, with the reason) back to the process that owns the study.

Workers never write to the run directory, the measurement store or the tuning database: the
driver records every trial in the journal, and a worker whose store lacks the measurements the
driver searched with fails its trials with a reason naming the store, instead of measuring.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

from automc.accuracy import checked_accuracy
from automc.types import Candidate, Evaluation

Score = Callable[[Candidate], Evaluation]
PromotedScore = Callable[[Candidate], float]


@dataclass(frozen=True)
class WorkerScorers:
    """What a worker scores with: ``score`` every trial's candidate; ``promote`` the accuracy
    (fraction) at the higher fidelity of a multi-fidelity search (``None``: no promotion)."""

    score: Score
    promote: PromotedScore | None = None


ScorerFactory = Callable[[], WorkerScorers]


@dataclass(frozen=True)
class WorkerResult:
    """One scored candidate: its ``evaluation`` (or, for a promotion, its ``promoted_accuracy``,
    a fraction), or ``error`` ("Type: message") when scoring raised; ``worker`` says where it
    ran (host, pid, and the Ray node id on Ray)."""

    evaluation: Evaluation | None
    error: str | None
    worker: dict[str, Any] = field(default_factory=dict)
    promoted_accuracy: float | None = None


def worker_identity(**extra: Any) -> dict[str, Any]:
    """Host name and pid of this process, plus ``extra`` (e.g. a Ray node id)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), **extra}


def score_safely(scorers: WorkerScorers, candidate: Candidate, identity: dict[str, Any],
                 promote: bool = False) -> WorkerResult:
    """``candidate``'s score (``promote``: its promoted accuracy) as a :class:`WorkerResult`: an
    exception becomes the trial's reason, formatted as the in-process driver records it."""
    try:
        if not promote:
            return WorkerResult(scorers.score(candidate), None, identity)
        if scorers.promote is None:
            raise RuntimeError("this worker was built without the search's promoted proxy")
        return WorkerResult(None, None, identity, checked_accuracy(scorers.promote(candidate)))
    except Exception as e:  # noqa: BLE001 — any failure of a candidate is that trial's result
        return WorkerResult(None, f"{type(e).__name__}: {e}", identity)
