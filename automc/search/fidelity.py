"""Multi-fidelity scoring: every trial gets the cheap accuracy proxy; the promising ones are
scored again at a higher fidelity (a short recovery), and keep both numbers.

A trial is promising when its cheap point (accuracy, latency, size) is not dominated by the
cheap point of any trial completed before it: it would join the cheap front. Its objective
accuracy is then the higher-fidelity one, so the front mixes fidelities, and says which each
point has (user attrs ``fidelity``, ``accuracy_proxy``, ``accuracy_promoted``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from automc.types import Candidate

# User attrs of a multi-fidelity trial.
FIDELITY_ATTRS = ("fidelity", "accuracy_proxy", "accuracy_promoted")


@dataclass(frozen=True)
class Promotion:
    """``score(candidate)`` is the accuracy (fraction) at the higher fidelity named ``high``;
    ``low`` names the cheap proxy every trial gets (e.g. ``"eval"`` → ``"finetune"``)."""

    score: Callable[[Candidate], float]
    low: str
    high: str


def cheap_point(trial: optuna.trial.FrozenTrial) -> tuple[float, float, float]:
    """A completed trial's (accuracy, latency ms, size bytes) at the cheap fidelity."""
    acc, latency, size = trial.values
    return float(trial.user_attrs.get("accuracy_proxy", acc)), latency, size


def is_promising(study: optuna.Study, point: tuple[float, float, float]) -> bool:
    """True when no completed trial's cheap point dominates ``point`` (accuracy ↑, latency ↓, size ↓)."""
    acc, latency, size = point
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a, lat, sz = cheap_point(t)
        if a >= acc and lat <= latency and sz <= size and (a, lat, sz) != (acc, latency, size):
            return False
    return True
