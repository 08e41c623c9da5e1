"""A small real search whose frames the report tests draw; latency source chosen per test."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from automc.search import SearchSettings, pareto_frame, run_search, trials_frame
from automc.search.space import LayerOptions, ResolvedSpace
from automc.types import Candidate, Evaluation

SPACE = ResolvedSpace(
    name="t",
    layers=(LayerOptions("a", ((32, 32), (8, 8)), (0.0, 0.5), (1.0,)),
            LayerOptions("b", ((32, 32), (8, 8)), (0.0, 0.5), (1.0, 0.5))),
    cells={"blk": ("keep", "skip")}, max_latency_ms=None, max_size_bytes=None,
)


def _score(source: str):
    def score(c: Candidate) -> Evaluation:
        lat = sum((0.4 if c.choice(n).w_bits < 32 else 1.0) * (1 - c.choice(n).prune) * c.choice(n).rank for n in "ab")
        size = sum(1000 * c.choice(n).w_bits / 8 * (1 - c.choice(n).prune) * c.choice(n).rank for n in "ab")
        acc = 0.9 - sum(0.002 * (32 - c.choice(n).w_bits) + 0.06 * c.choice(n).prune for n in "ab")
        if c.cell("blk") == "skip":
            lat, acc = lat * 0.8, acc - 0.03
        return Evaluation(acc, lat, int(size), latency_source=source)

    return score


def _run(run_dir: Path, source: str, min_accuracy: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    study = run_search(replace(SPACE, min_accuracy=min_accuracy), _score(source), run_dir,
                       SearchSettings(n_trials=12, seed=3, progress=False))
    return trials_frame(study), pareto_frame(study)


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _run(tmp_path_factory.mktemp("cal"), "calibrated")


@pytest.fixture(scope="session")
def uncalibrated(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _run(tmp_path_factory.mktemp("uncal"), "uncalibrated")


@pytest.fixture
def toy_study(tmp_path):
    """A finished 12-trial toy search in ``tmp_path / "run"``."""
    return run_search(SPACE, _score("calibrated"), tmp_path / "run", SearchSettings(n_trials=12, seed=3, progress=False))
@pytest.fixture(scope="session")
def floored(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A search with an accuracy floor of 85% that some candidates fall under."""
    return _run(tmp_path_factory.mktemp("floor"), "calibrated", min_accuracy=0.85)
