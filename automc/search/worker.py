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
    formatted as the in-process driver records it."""
    try:
        return WorkerResult(score(candidate), None, identity)
    except Exception as e:  # noqa: BLE001 — any failure of a candidate is that trial's result
        return WorkerResult(None, f"{type(e).__name__}: {e}", identity)
