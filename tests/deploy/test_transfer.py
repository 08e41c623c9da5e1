"""Trace transfer on real TVM builds: one task per structure is tuned, the others replay it."""

from __future__ import annotations

import numpy as np
import pytest

from automc.deploy._fast_tvm_import import import_meta_schedule
from automc.deploy._transfer import REPLAYED_RUN_SECS, structure_of
from automc.deploy.build import fused_module, compile_module, tune_modules
from kernel_modules import kernel_input, kernel_module
from automc.devices import tvm_target
from automc.devices.local import run_local
from automc.types import KernelSpec

A = KernelSpec(op="conv2d", batch=1, in_channels=32, out_channels=32, height=8, width=8, act="relu6")
B = KernelSpec(**{**A.to_dict(), "out_channels": 48})
C = KernelSpec(**{**A.to_dict(), "in_channels": 24, "height": 16, "width": 16})
DW = KernelSpec(**{**A.to_dict(), "kernel_size": 3, "padding": 1, "groups": 32})


@pytest.fixture
def profile(host_profile):
    return host_profile.model_copy(update={"tuning": host_profile.tuning.model_copy(
        update={"trials_per_kernel": 2, "repeat": 3, "min_repeat_ms": 5})})


def _prim(spec: KernelSpec, profile):
    ms = import_meta_schedule()
    (task,) = ms.relax_integration.extract_tasks(fused_module(kernel_module(spec)), tvm_target(profile))
    return task.dispatched[0]


def _records(db, spec: KernelSpec, profile):
    prim = _prim(spec, profile)
    assert db.has_workload(prim), f"{spec.key} has no record"
    return db.get_top_k(db.commit_workload(prim), 10)


def test_one_task_per_structure_is_tuned_and_the_rest_replay_it(profile, tmp_path):
    ms = import_meta_schedule()
    db = ms.database.JSONDatabase(str(tmp_path / "w.json"), str(tmp_path / "r.json"), allow_missing=True)
    assert tune_modules([kernel_module(A), kernel_module(B)], profile, database=db) == 2
    tuned = _records(db, A, profile)
    assert tuned and all(min(float(s) for s in r.run_secs) < 1.0 for r in tuned)  # measured by tuning
    (replayed,) = _records(db, B, profile)
    assert [float(s) for s in replayed.run_secs] == [REPLAYED_RUN_SECS] and len(replayed.trace.insts) > 0
    # a later shape of the same structure replays too, without a tuning session
    assert tune_modules([kernel_module(C)], profile, database=db) == 1
    (replayed_c,) = _records(db, C, profile)
    assert [float(s) for s in replayed_c.run_secs] == [REPLAYED_RUN_SECS]

    # the replayed schedule computes what TVM's default schedule computes
    empty = ms.database.JSONDatabase(str(tmp_path / "w0.json"), str(tmp_path / "r0.json"), allow_missing=True)
    x = kernel_input(C)
    (replayed_out,), timing = run_local(compile_module(kernel_module(C), profile, db), [x], profile)
    (default_out,), _ = run_local(compile_module(kernel_module(C), profile, empty), [x], profile)
    np.testing.assert_allclose(replayed_out, default_out, rtol=1e-5, atol=1e-5)
    assert timing.median_ms > 0


def test_structures_tell_depthwise_from_pointwise(profile):
    assert structure_of(_prim(A, profile)) == structure_of(_prim(B, profile)) == structure_of(_prim(C, profile))
    assert structure_of(_prim(DW, profile)) != structure_of(_prim(A, profile))
    int8 = KernelSpec(**{**A.to_dict(), "dtype": "int8"})
    ms = import_meta_schedule()
    int8_structures = {structure_of(t.dispatched[0]) for t in ms.relax_integration.extract_tasks(
        fused_module(kernel_module(int8)), tvm_target(profile))}
    assert structure_of(_prim(A, profile)) not in int8_structures
