"""Sensitivity-guided seeds: try every compressing choice alone, then combine the cheap ones.

Random and evolved candidates change every layer at once, and the losses compound: on the demo
CNN almost none of them stays within a point of fp32 even though most single changes cost less
than half a point. So the search first runs the *single changes* — scores the fp32 candidate with
one choice changed, for every choice of the space (HAQ and AMC start from the same per-layer sensitivity) —
and then enqueues greedy *combinations*: the choices that save the most latency (or size) per
point of accuracy lost, taken while their summed single-change losses stay within a budget.
Single changes and combinations are ordinary trials, scored by the real objective and stored in the
study, so they resume like any other trial and sit on the front when they earn it.

The uniform baselines, queued before all of them, and the candidates calibration measures first
are here too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable

from optuna.trial import FrozenTrial

from automc.search.space import ResolvedSpace, candidate_from_params, param_options
from automc.types import Candidate

# Summed single-change accuracy losses (fractions) a combination may spend. Losses compound, so
# the budgets are tight; NSGA-II explores around the combinations afterwards.
LATENCY_BUDGETS = (0.0, 0.005, 0.01, 0.02)
SIZE_BUDGETS = (0.005, 0.01)
# The user attr of a single-change seed trial, [key, value]; journals written before it was
# renamed call it "probe", and a resumed search must still find those.
SINGLE_ATTRS = ("single_change", "probe")


@dataclass(frozen=True)
class SingleChange:
    """The scored fp32 candidate with the single choice ``key = value`` changed."""

    key: str  # Optuna param name, e.g. "blocks.1.expand.0.prune"
    value: Any
    accuracy: float  # fraction
    latency_ms: float
    size_bytes: float


@dataclass(frozen=True)
class Fp32Scores:
    """The unchanged (fp32) candidate's scores that single changes are measured against."""

    accuracy: float
    latency_ms: float
    size_bytes: float


def single_change_params(space: ResolvedSpace, max_changes: int) -> dict[str, dict[str, Any]]:
    """Seed name (``"single:{key}={value}"``) → Optuna params of the fp32 candidate with that one
    choice changed, at most ``max_changes`` of them.

    Every non-default option of every param is tried; when that exceeds ``max_changes``, only the
    most aggressive option per param (fewest bits, most pruning, lowest rank, skip before half);
    when even that exceeds it, none (an empty dict): trying a few layers only would bias the
    combinations toward them.

    >>> single_change_params(space, max_changes=64)  # doctest: +SKIP
    {'single:conv1.bits=8/8': {...}, 'single:conv1.prune=0.25': {...}, ...}
    """
    base = space.uniform()
    every = [(key, value) for key, options in param_options(space).items() for value in options if value != base[key]]
    if len(every) > max_changes:
        every = [(key, _most_aggressive(key, options)) for key, options in param_options(space).items()
                 if any(v != base[key] for v in options)]
    if len(every) > max_changes:
        return {}
    return {f"single:{key}={value}": {**base, key: value} for key, value in every}


def single_change_of(trial: FrozenTrial) -> list | None:
    """[key, value] of a single-change seed trial (either attr of ``SINGLE_ATTRS``), else None."""
    return next((trial.user_attrs[a] for a in SINGLE_ATTRS if a in trial.user_attrs), None)


def combination_params(space: ResolvedSpace, reference: Fp32Scores,
                       singles: Iterable[SingleChange]) -> dict[str, dict[str, Any]]:
    """Seed name → Optuna params: greedy combinations of single changes under accuracy budgets.

    For latency, choices that make the candidate faster are ranked by accuracy lost per ms saved
    (free ones first) and taken while the summed losses stay within each of ``LATENCY_BUDGETS``;
    the same for size with ``SIZE_BUDGETS``. One option per param: a costlier option that saves
    more replaces the one taken when the budget allows. Duplicate combinations are dropped.

    >>> combination_params(space, Fp32Scores(0.985, 0.9, 1e5), singles)  # doctest: +SKIP
    {'latency≤0.0pt': {...}, 'latency≤0.5pt': {...}, ...}
    """
    singles = list(singles)
    base = space.uniform()
    out: dict[str, dict[str, Any]] = {}
    for objective, budgets in (("latency_ms", LATENCY_BUDGETS), ("size_bytes", SIZE_BUDGETS)):
        gains = [(p, getattr(reference, objective) - getattr(p, objective)) for p in singles]
        ranked = sorted(((p, g) for p, g in gains if g > 0),
                        key=lambda pg: max(reference.accuracy - pg[0].accuracy, 0.0) / pg[1])
        for budget in budgets:
            params, spent = dict(base), 0.0
            taken: dict[str, tuple[float, float]] = {}  # key → (loss, gain) of the option taken
            for p, gain in ranked:
                loss = max(reference.accuracy - p.accuracy, 0.0)
                old_loss, old_gain = taken.get(p.key, (0.0, 0.0))
                # a later, costlier option of a taken param replaces it when it saves more and fits
                if gain <= old_gain or spent - old_loss + loss > budget + 1e-12:
                    continue
                params[p.key] = p.value
                taken[p.key] = (loss, gain)
                spent += loss - old_loss
            if taken and params not in out.values():
                out[f"{objective.split('_')[0]}≤{budget * 100:g}pt"] = params
    return out


def _most_aggressive(key: str, options: list[Any]) -> Any:
    kind = key.rsplit(".", 1)[1]
    if kind == "bits":
        return min(options, key=lambda b: tuple(int(x) for x in b.split("/")))
    if kind == "prune":
        return max(options)
    if kind == "rank":
        return min(options)
    return "skip" if "skip" in options else next(c for c in options if c != "keep")


def baseline_params(space: ResolvedSpace) -> dict[str, dict[str, Any]]:
    """Uniform baselines as name → Optuna params: fp32, int8, prune (50%), w4a8 (4-bit weights,
    8-bit activations) and lowrank (rank ½), duplicates dropped.

    A space without 8-bit (or without 50% pruning) makes that baseline equal to fp32; it is
    then left out rather than run twice.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, params in (("fp32", space.uniform()), ("int8", space.uniform((8, 8))),
                         ("prune", space.uniform(prune=0.5)), ("w4a8", space.uniform((4, 8))),
                         ("lowrank", space.uniform(rank=0.5))):
        if params not in out.values():
            out[name] = params
    return out


def random_params(space: ResolvedSpace, rng: random.Random) -> dict[str, Any]:
    """Optuna params of a uniformly random candidate of ``space``."""
    return {name: rng.choice(options) for name, options in param_options(space).items()}


def calibration_candidates(space: ResolvedSpace, n_random: int = 64, seed: int = 0) -> tuple[list[Candidate], list[Candidate]]:
    """(the uniform baselines, ``n_random`` random candidates): what calibration measures first."""
    rng = random.Random(seed)
    first = [candidate_from_params(space, p) for p in baseline_params(space).values()]
    return first, [candidate_from_params(space, random_params(space, rng)) for _ in range(n_random)]
