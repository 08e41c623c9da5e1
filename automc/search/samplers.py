"""Optuna samplers by name (``--sampler``, ``sampler=``): the ones Optuna offers for
multi-objective studies with constraints, each seeded."""

from __future__ import annotations

from typing import Callable

import optuna

from automc.errors import UserInputError


def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    # generations of 16, not Optuna's 50: with the ~100–200 trials a search affords, a
    # population of 50 leaves NSGA-II mostly random sampling (60 trials: 10 evolved)
    return optuna.samplers.NSGAIISampler(population_size=16, seed=seed)


def _nsga3(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIIISampler(population_size=16, seed=seed)


# The default: with the same trials and wall time, TPE's fronts held 12-23% more hypervolume
# than NSGA-II's, which barely beat random search (experiments/search_quality.py).
DEFAULT_SAMPLER = "tpe"

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "nsga2": _nsga2,
    "nsga3": _nsga3,
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
}


def check_sampler_name(name: str) -> None:
    """A UserInputError naming ``--sampler`` unless ``name`` is registered (checked before a
    search calibrates or writes anything)."""
    if name not in SAMPLERS:
        raise UserInputError(f"--sampler: unknown sampler '{name}'; choose one of {', '.join(SAMPLERS)}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler registered as ``name``, seeded.

    >>> make_sampler("tpe", 0).__class__.__name__
    'TPESampler'
    """
    check_sampler_name(name)
    return SAMPLERS[name](seed)
