"""Tune (MetaSchedule, persistent per-profile database) and compile Relax modules for a profile."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Sequence

from automc._paths import cache_dir
from automc.deploy import x86
from automc.deploy._transfer import structure_of, transfer_traces
from automc.deploy._fast_tvm_import import import_meta_schedule, worker_initializer  # the first public here
from automc.devices import TaskCall, device_runner, tvm_target
from automc.profiles import HardwareProfile


def database_dir(profile: HardwareProfile) -> Path:
    """The profile's MetaSchedule tuning database: shared by calibration, validation and export."""
    path = cache_dir() / "tuning" / profile.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_database(profile: HardwareProfile):
    """The profile's MetaSchedule tuning database (JSON files in ``database_dir``; empty the
    first time), to pass to ``tune`` and ``compile_module``."""
    ms = import_meta_schedule()

    root = database_dir(profile)
    return ms.database.JSONDatabase(str(root / "workloads.json"), str(root / "records.json"), allow_missing=True)


@contextlib.contextmanager
def _quiet_tvm():
    """MetaSchedule logs every task at INFO to the root logger; keep the user's terminal clean."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    # MetaSchedule re-adds its handlers per session by name (dictConfig); left-overs from an
    # earlier session point at its deleted work dir, and an unnamed one (e.g. a test's capture
    # handler) makes its config builder crash on None.format
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def fused_module(mod):
    """``mod`` with its operators fused into TVM tasks, as compile_relax fuses them.

    extract_tasks wants the fused module; compile_relax wants the raw one (keys then match)."""
    from tvm import relax

    seq = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
           relax.transform.FuseOps(), relax.transform.FuseTIR()]
    for p in seq:
        mod = p(mod)
    return mod


def task_calls(mod) -> list[TaskCall]:
    """The fused tasks ``main`` of a lowered Relax module calls, in order (see ``fused_module``)."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")

    def sig(ty) -> tuple[tuple[int, ...], str]:
        return tuple(int(d) for d in ty.shape.values), str(ty.dtype)

    def outputs(ty) -> tuple[tuple[tuple[int, ...], str], ...]:
        # a task may write several tensors (a split): each is one more buffer argument
        return tuple(sig(t) for t in ty.fields) if isinstance(ty, relax.TupleType) else (sig(ty),)

    calls = []
    for block in fused_module(mod)["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and value.op.same_as(call_tir):
                args = tuple(sig(a.ty) for a in value.args[1].fields) + outputs(value.ty)
                calls.append(TaskCall(value.args[0].name_hint, args,
                                      tuple(isinstance(a, tvm.ir.expr.Constant) for a in value.args[1].fields)))
    return calls


def tune(mod, profile: HardwareProfile, trials_per_task: int | None = None, database=None) -> int:
    """Schedule the tasks of ``mod`` missing from the profile's database (see ``tune_modules``);
    returns how many were missing.

    ``trials_per_task`` defaults to the profile's tuning budget; 0 tunes nothing (tasks then
    compile with TVM's default schedules).
    """
    return tune_modules([mod], profile, trials_per_task, database)


def tune_modules(mods: Sequence, profile: HardwareProfile, trials_per_task: int | None = None, database=None) -> int:
    """Schedule every task of ``mods`` missing from the database; returns how many were missing.

    With ``tuning.transfer_traces`` (default) a task takes the replayed trace of the nearest
    tuned task of its structure (``_transfer``), and only one task per structure left without
    one is tuned. Tuning runs in one MetaSchedule session for all: the builder and trial-runner worker
    pools start once, which was most of the ~24 s a one-kernel session cost here.
    """
    ms = import_meta_schedule()
    from tvm_ffi import structural_equal, structural_hash

    trials = profile.tuning.trials_per_kernel if trials_per_task is None else trials_per_task
    if trials <= 0:
        return 0
    db = database if database is not None else open_database(profile)
    target = tvm_target(profile)
    todo, seen = [], {}
    for mod in mods:
        for task in ms.relax_integration.extract_tasks(fused_module(mod), target):
            prim = task.dispatched[0]
            if db.has_workload(prim) or x86.is_packed_func(prim):  # packed tasks: hand-scheduled
                continue
            same = seen.setdefault(structural_hash(prim), [])
            if any(structural_equal(prim, other) for other in same):
                continue
            same.append(prim)
            todo.append(task)
    if not todo:
        return 0
    scheduled = len(todo)
    later = []
    if profile.tuning.transfer_traces:
        # Replay what the database knows; of the rest, tune one task per structure and replay
        # its trace onto the others after.
        first, structures = [], set()
        for task in transfer_traces(ms, todo, db, target):
            structure = structure_of(task.dispatched[0])
            (later if structure in structures else first).append(task)
            structures.add(structure)
        todo = first
    if todo:
        _tune_tasks(ms, todo, profile, trials, db)
    if later:
        # a task no replay fits stays on TVM's default schedule, as an untuned one would
        transfer_traces(ms, later, db, target)
    return scheduled


def _tune_tasks(ms, todo: Sequence, profile: HardwareProfile, trials: int, db) -> None:
    builder, trial_runner = device_runner(profile).tuning_workers(ms, worker_initializer)
    with tempfile.TemporaryDirectory() as work_dir, _quiet_tvm():
        # A small evolutionary population: with a handful of trials per task, most of the
        # default 512 candidates per generation would never be measured.
        strategy = ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=1)
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(todo, work_dir, strategy=strategy, seed=0)
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=work_dir,
            max_trials_global=trials * len(contexts), max_trials_per_task=trials,
            num_trials_per_iter=min(trials, 16),
            builder=builder, runner=trial_runner, database=db,
        )


def compile_module(mod, profile: HardwareProfile, database=None):
    """Compile with the tuning database applied (untuned tasks fall back to default schedules)."""
    ms = import_meta_schedule()

    db = database if database is not None else open_database(profile)
    with _quiet_tvm():
        if any(x86.is_packed_func(f) for f in mod.functions.values()):
            # packed kernels (AVX2 / AVX-512 lowering) are hand-scheduled between fusion and the database
            return x86.compile_relax(db, mod, tvm_target(profile))
        return ms.relax_integration.compile_relax(db, mod, tvm_target(profile), None)
