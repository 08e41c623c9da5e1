"""Trace transfer: schedule an untuned task by replaying the tuned trace of the nearest task of
the same structure (the tuning database does not match another channel count, but a tuned
trace replays onto it, at no tuning cost and close to tuning that shape).

A task's *structure* is what a trace can replay onto: the names of its blocks (traces address
blocks by name) and the rank, dtype and unit dimensions of every argument (a depthwise weight
C×1×3×3 is not a pointwise one O×I×1×1). Among the database's records of the same structure, the
nearest shapes (summed |log ratio| of every dimension) are tried first, measured records before
replayed ones; the first trace that applies is committed for the new workload, marked with
``REPLAYED_RUN_SECS`` so that it never outranks a measured record.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

# A replayed trace has no tuning-time measurement; MetaSchedule marks failed runs with 1e10,
# so this sits between a real time and a failure.
REPLAYED_RUN_SECS = 1e9
# Traces tried per task before it is left for tuning: a trace that does not apply fails fast.
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class _Source:
    structure: tuple
    shapes: tuple[tuple[int, ...], ...]
    replayed: bool
    run_secs: float
    record: object  # ms.database.TuningRecord


def structure_of(prim_mod) -> tuple:
    """What must match for a trace to replay onto ``prim_mod`` (a one-function IRModule)."""
    blocks = tuple(re.findall(r'T\.s?block\("([^"]+)"\)', prim_mod.script()))
    args = tuple((str(a.dtype), tuple(int(d) == 1 for d in a.shape)) for a in _args(prim_mod))
    return blocks, args


def transfer_traces(ms, tasks: Sequence, database, target) -> list:
    """Commit a replayed trace for every task of ``tasks`` that one applies to; return the rest.

    ``tasks`` are MetaSchedule ``ExtractedTask``s missing from ``database``.
    """
    sources = _sources(ms, database)
    left = []
    for task in tasks:
        prim_mod = task.dispatched[0]
        structure, shapes = structure_of(prim_mod), _shapes(prim_mod)
        ranked = sorted((s for s in sources if s.structure == structure),
                        key=lambda s: (s.replayed, _distance(s.shapes, shapes), s.run_secs))
        trace = _first_that_applies(ms, ranked[:MAX_ATTEMPTS], prim_mod)
        if trace is None:
            left.append(task)
            continue
        workload = database.commit_workload(prim_mod)
        database.commit_tuning_record(ms.database.TuningRecord(
            trace, workload, [REPLAYED_RUN_SECS], target, ms.arg_info.ArgInfo.from_prim_func(_prim_func(prim_mod))))
    return left


def _first_that_applies(ms, ranked: Sequence[_Source], prim_mod):
    from tvm.s_tir import Schedule

    for source in ranked:
        sch = Schedule(prim_mod)
        try:
            source.record.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception:  # noqa: BLE001 - TVM raises TVMError/ValueError/... for a trace that does not fit
            continue
        return sch.trace
    return None


def _sources(ms, database) -> list[_Source]:
    out = []
    for record in database.get_all_tuning_records():
        secs = [float(s) for s in (record.run_secs or [])]
        if not secs or min(secs) >= 1e10:  # failed builds/runs carry 1e10
            continue
        prim_mod = record.workload.mod
        out.append(_Source(structure_of(prim_mod), _shapes(prim_mod), min(secs) >= REPLAYED_RUN_SECS,
                           sum(secs) / len(secs), record))
    return out


def _prim_func(prim_mod):
    return next(iter(prim_mod.functions.values()))


def _args(prim_mod):
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return ArgInfo.from_prim_func(_prim_func(prim_mod))


def _shapes(prim_mod) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(d) for d in a.shape) for a in _args(prim_mod))


def _distance(a: tuple[tuple[int, ...], ...], b: tuple[tuple[int, ...], ...]) -> float:
    return sum(abs(math.log(max(x, 1) / max(y, 1))) for sa, sb in zip(a, b) for x, y in zip(sa, sb))
