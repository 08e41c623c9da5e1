"""Time compiled Relax code where the profile measures (its device runner: this host, or a
device behind a TVM RPC tracker): a whole model, or each fused task it calls
(``deploy.build.task_calls`` finds them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automc.devices import TaskCall, Timing, device_runner
from automc.profiles import HardwareProfile


def time_tasks(executable, calls: list[TaskCall], profile: HardwareProfile) -> list[Timing | None]:
    """Each task of a compiled model timed on its own where the profile measures (None for a
    call the VM runs as a builtin, e.g. reshape): ``tuning.repeat`` repeats of at least
    ``tuning.task_min_repeat_ms`` ms, on random arguments of the call's shapes and dtypes.

    Timing them one by one is what puts a measured number on each fused kernel as it runs in
    the model (epilogues, residual adds, quantizations included). On the profile's 2 threads
    here the demo's tasks alone make up about two thirds of the whole model (0.18 of 0.27 ms):
    the rest is the VM's work between tasks and each task reading what the other core wrote,
    which ``predictors.fit_graph_pricing`` prices from whole-model measurements.
    """
    library = executable.mod.imports[0]  # the compiled kernels, beside the VM's bytecode
    present = [c for c in calls if library.implements_function(c.name)]
    times = iter(device_runner(profile).time_tasks(library, present))
    return [next(times) if library.implements_function(c.name) else None for c in calls]


def time_executable(executable, input_arrays: list[np.ndarray], profile: HardwareProfile) -> Timing:
    """Time ``main`` of a compiled Relax executable where the profile measures (ms)."""
    return device_runner(profile).time_executable(executable, input_arrays)


def run_library(library: str | Path, input_arrays: list[np.ndarray],
                profile: HardwareProfile) -> tuple[list[np.ndarray], Timing]:
    """Load an exported library where the profile measures (this host, or its RPC device), run
    ``main`` once on ``input_arrays`` and time it. Returns (outputs as numpy arrays, Timing in ms)."""
    return device_runner(profile).run_library(library, input_arrays)
