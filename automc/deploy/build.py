"""Tune (MetaSchedule, persistent per-profile database) and compile Relax modules for a profile."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Sequence

from automc._paths import cache_dir
from automc.deploy._fast_tvm_import import import_meta_schedule, worker_initializer
from automc.profiles import HardwareProfile


def tvm_target(profile: HardwareProfile):
    """The profile's TVM Target (with its host, for cross-compiled and GPU targets)."""
    from tvm.target import Target

    if profile.host:
        return Target(dict(profile.target), host=dict(profile.host))
    return Target(dict(profile.target))


def database_dir(profile: HardwareProfile) -> Path:
    """The profile's MetaSchedule tuning database: shared by calibration, validation and export."""
    path = cache_dir() / "tuning" / profile.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_database(profile: HardwareProfile):
    ms = import_meta_schedule()

    root = database_dir(profile)
    return ms.database.JSONDatabase(str(root / "workloads.json"), str(root / "records.json"), allow_missing=True)


@contextlib.contextmanager
def _quiet_tvm():
    """MetaSchedule logs every task at INFO to the root logger; keep the user's terminal clean."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    old = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def _fused(mod):
    """extract_tasks wants the fused module; compile_relax wants the raw one (keys then match)."""
    from tvm import relax

    seq = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
           relax.transform.FuseOps(), relax.transform.FuseTIR()]
    for p in seq:
        mod = p(mod)
    return mod


def tune(mod, profile: HardwareProfile, trials_per_task: int | None = None, database=None) -> int:
    """Tune the tasks of ``mod`` missing from the profile's database; returns how many were tuned.

    ``trials_per_task`` defaults to the profile's tuning budget; 0 tunes nothing (tasks then
    compile with TVM's default schedules).
    """
    return tune_modules([mod], profile, trials_per_task, database)


def tune_modules(mods: Sequence, profile: HardwareProfile, trials_per_task: int | None = None, database=None) -> int:
    """Tune, in one MetaSchedule session, every task of ``mods`` missing from the database.

    One session for many kernels: the builder and runner worker pools start once, which was
    most of the ~24 s a one-kernel session cost here.
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
        for task in ms.relax_integration.extract_tasks(_fused(mod), target):
            prim = task.dispatched[0]
            if db.has_workload(prim):
                continue
            same = seen.setdefault(structural_hash(prim), [])
            if any(structural_equal(prim, other) for other in same):
                continue
            same.append(prim)
            todo.append(task)
    if not todo:
        return 0
    with tempfile.TemporaryDirectory() as work_dir, _quiet_tvm():
        # A small evolutionary population: with a handful of trials per task, most of the
        # default 512 candidates per generation would never be measured.
        strategy = ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=1)
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(todo, work_dir, strategy=strategy, seed=0)
        ms.tune.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=work_dir,
            max_trials_global=trials * len(contexts), max_trials_per_task=trials,
            num_trials_per_iter=min(trials, 16),
            # one build worker: on 2 cores more workers time out every build
            builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=60, initializer=worker_initializer),
            runner=ms.runner.LocalRunner(ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20),
                                         initializer=worker_initializer),
            database=db,
        )
    return len(todo)


def compile_module(mod, profile: HardwareProfile, database=None):
    """Compile with the tuning database applied (untuned tasks fall back to default schedules)."""
    ms = import_meta_schedule()

    db = database if database is not None else open_database(profile)
    with _quiet_tvm():
        return ms.relax_integration.compile_relax(db, mod, tvm_target(profile), None)
