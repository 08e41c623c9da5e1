"""Shared by tests/search: a hand-built space and a real, cheap score.

Compression lowers latency and size, and costs accuracy.
"""

from __future__ import annotations

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
