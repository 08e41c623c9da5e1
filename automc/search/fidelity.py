"""Multi-fidelity scoring: every trial gets the cheap accuracy proxy; the promising ones are
scored again at a higher fidelity (a short recovery), and keep both numbers.

A trial is promising when its cheap point (accuracy, latency, size) is not dominated by the
cheap point of any trial completed before it: it would join the cheap front. Its objective
accuracy is then the higher-fidelity one, so the front mixes fidelities, and says which each
point has (user attrs ``fidelity``, ``accuracy_proxy``, ``accuracy_promoted``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import optuna
from optuna.trial import TrialState

from automc.types import Candidate, Evaluation

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


def wants_promotion(trial: optuna.Trial, ev: Evaluation, promotion: Promotion) -> bool:
    """Keep ``ev``'s cheap accuracy in ``trial``; is its cheap point one to promote? (If not, the
    trial is marked as scored at the low fidelity.)"""
    trial.set_user_attr("accuracy_proxy", ev.accuracy)
    if is_promising(trial.study, (ev.accuracy, ev.latency_ms, ev.size_bytes)):
        return True
    trial.set_user_attr("fidelity", promotion.low)
    return False


def record_promoted(trial: optuna.Trial, ev: Evaluation, accuracy: float, promotion: Promotion) -> Evaluation:
    """Keep the promoted ``accuracy`` (fraction) in ``trial``; ``ev`` with it as its accuracy."""
    trial.set_user_attr("accuracy_promoted", accuracy)
    trial.set_user_attr("fidelity", promotion.high)
    return replace(ev, accuracy=accuracy)

