import numpy as np
import pandas as pd
import pytest

from automc.search.pareto import ReferencePoint, _hv3_fallback, hypervolume, reference_point, summarize, trials_frame
from automc.search.driver import SearchSettings, run_search
from automc.types import Candidate, LayerChoice

from search_toys import toy_score


def test_summary_counts_bits_pruning_rank_and_cells():
    cand = Candidate({f"l{i}": LayerChoice(8, 8) for i in range(9)}
                     | {"p1": LayerChoice(4, 8, prune=0.25), "p2": LayerChoice(4, 8, prune=0.25),
                        "r": LayerChoice(4, 8, rank=0.5)},
                     {"blk": "skip", "other": "keep"})
    assert summarize(cand) == "8/8×9 4/8×3 p.25×2 r.5×1 skip×1"


def test_hypervolume_is_normalised():
    ref = ReferencePoint(0.0, 10.0, 1000)
    perfect = pd.DataFrame({"accuracy": [1.0], "latency_ms": [0.0], "size_bytes": [0]})
    assert hypervolume(perfect, ref) == pytest.approx(1.0)
    outside = pd.DataFrame({"accuracy": [0.9], "latency_ms": [11.0], "size_bytes": [10]})
    assert hypervolume(outside, ref) == 0.0
    two = pd.DataFrame({"accuracy": [0.5, 0.8], "latency_ms": [2.0, 5.0], "size_bytes": [500, 500]})
    # Union of boxes 0.5×0.8×0.5 and 0.8×0.5×0.5, overlapping in 0.5×0.5×0.5.
    assert hypervolume(two, ref) == pytest.approx(0.2 + 0.2 - 0.125)


def test_fallback_hypervolume_matches_optuna():
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(0)
    pts = rng.uniform(0.05, 0.95, size=(25, 3))
    assert _hv3_fallback(pts) == pytest.approx(compute_hypervolume(pts, np.ones(3)))


def test_reference_point_and_frame_types(space, tmp_path):
    study = run_search(space, toy_score, tmp_path, SearchSettings(n_trials=5, progress=False))
    trials = trials_frame(study)
    ref = reference_point(trials)
    assert ref.accuracy == 0.0 and ref.latency_ms == pytest.approx(3.0 * 1.1)
    assert trials["size_bytes"].dtype == "Int64"
    assert trials.loc[0, "summary"] == "32/32×3"
