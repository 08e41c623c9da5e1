"""Shared by tests/search: a hand-built space and a real, cheap score.

Compression lowers latency and size, and costs accuracy.
"""

from __future__ import annotations

from optuna.trial import TrialState

from automc.search.fidelity import cheap_point
from automc.search.space import LayerOptions, ResolvedSpace
from automc.search.worker import WorkerScorers
from automc.types import Candidate, Evaluation

LAYERS = ("a", "b", "c")


def make_space(max_latency_ms: float | None = None, max_size_bytes: int | None = None) -> ResolvedSpace:
    return ResolvedSpace(
        name="t",
        layers=(LayerOptions("a", ((32, 32), (8, 8)), (0.0, 0.5), (1.0,)),
                LayerOptions("b", ((32, 32), (8, 8), (4, 8)), (0.0, 0.25, 0.5), (1.0,)),
                LayerOptions("c", ((32, 32), (8, 8)), (0.0,), (1.0, 0.5))),
        cells={"blk": ("keep", "skip")},
        max_latency_ms=max_latency_ms, max_size_bytes=max_size_bytes,
    )


def toy_score(candidate: Candidate, source: str = "calibrated") -> Evaluation:
    """1 ms and 1000 params per fp32 layer; each compression trades accuracy for speed and bytes."""
    latency, size, acc = 0.0, 0.0, 0.9
    for name in LAYERS:
        c = candidate.choice(name)
        keep = (1 - c.prune) * c.rank
        latency += (0.4 if c.w_bits < 32 else 1.0) * keep
        size += 1000 * c.w_bits / 8 * keep
        acc -= 0.002 * (32 - c.w_bits) + 0.06 * c.prune + 0.05 * (1 - c.rank)
    if candidate.cell("blk") == "skip":
        latency *= 0.8
        acc -= 0.03
    return Evaluation(acc, latency, int(size), latency_source=source, extras={"macs": int(latency * 1e6)})



def recovered(candidate: Candidate) -> float:
    """A stand-in for a short recovery: it wins back most of what pruning and low rank cost."""
    lost = sum(0.06 * c.prune + 0.05 * (1 - c.rank) for c in map(candidate.choice, LAYERS))
    return toy_score(candidate).accuracy + 0.8 * lost


def check_promotions(trials: list, n: int) -> None:
    """Every trial of ``n`` completed with its cheap accuracy kept; the promoted ones (some, not
    all) score ``recovered``, and a trial left unpromoted is dominated by another's cheap point."""
    assert len(trials) == n and all(t.state == TrialState.COMPLETE for t in trials)
    promoted = [t for t in trials if t.user_attrs["fidelity"] == "finetune"]
    assert promoted and len(promoted) < n
    for t in trials:
        cand = Candidate.from_json(t.user_attrs["candidate"])
        assert t.user_attrs["accuracy_proxy"] == toy_score(cand).accuracy
        if t in promoted:
            assert t.values[0] == t.user_attrs["accuracy_promoted"] == recovered(cand)
        else:
            assert t.user_attrs["fidelity"] == "eval" and "accuracy_promoted" not in t.user_attrs
            a, lat, size = cheap_point(t)
            assert any(p[0] >= a and p[1] <= lat and p[2] <= size and p != (a, lat, size)
                       for p in map(cheap_point, trials))


# Scorer factories (picklable by reference) for workers that build their own scorer, as Ray actors do.

def toy_scorer():
    return WorkerScorers(toy_score)


def promoting_scorer():
    return WorkerScorers(toy_score, recovered)


def _flaky(candidate: Candidate) -> Evaluation:
    if candidate.choice("b").prune == 0.5:
        raise RuntimeError("kernel did not build")
    return toy_score(candidate)


def flaky_scorer():
    return WorkerScorers(_flaky)


def _deadly(candidate: Candidate) -> Evaluation:
    import os

    if candidate.choice("a").prune == 0.5 and candidate.choice("b").prune == 0.5:
        os._exit(3)  # a crash no exception handler sees (segfault, OOM kill)
    return toy_score(candidate)


def deadly_scorer():
    return WorkerScorers(_deadly)
