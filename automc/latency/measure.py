"""Time compiled Relax code with TVM's time_evaluator: on this host, or on the profile's
device through a TVM RPC tracker when its runner is ``rpc`` (see ``remote``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automc.profiles import HardwareProfile


@dataclass(frozen=True)
class Timing:
    """Per-call latency statistics over ``repeat`` repeats (ms)."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    @property
    def spread(self) -> float:
        """(max − min) / median: how noisy the measurement was."""
        return (self.max_ms - self.min_ms) / self.median_ms if self.median_ms else 0.0


def time_vm(vm, dev, args: list, profile: HardwareProfile) -> Timing:
    """Time ``main`` of a (local or remote) Relax VirtualMachine on ``args`` (tensors already on
    ``dev``): ``tuning.repeat`` timed runs of at least ``tuning.min_repeat_ms`` ms each (so
    microsecond kernels are averaged over many calls). The caller has warmed it up."""
    # min_repeat_ms must be an int: time_evaluator's FFI signature rejects a float
    evaluator = vm.time_evaluator("main", dev, number=1, repeat=profile.tuning.repeat,
                                  min_repeat_ms=int(profile.tuning.min_repeat_ms))
    res = np.array(evaluator(*args).results) * 1e3
    return Timing(float(np.median(res)), float(res.min()), float(res.max()), len(res))


def time_executable(executable, input_arrays: list[np.ndarray], profile: HardwareProfile) -> Timing:
    """Time ``main`` of a compiled Relax executable where the profile measures (ms): on the local
    CPU for a local runner, on the device behind the profile's tracker for an rpc runner."""
    if profile.runner.kind == "rpc":
        from automc.latency.remote import time_remote

        return time_remote(executable, input_arrays, profile)
    return _run_local(executable, input_arrays, profile)[1]


def run_library(library: str | Path, input_arrays: list[np.ndarray],
                profile: HardwareProfile) -> tuple[list[np.ndarray], Timing]:
    """Load an exported library where the profile measures (this host, or its RPC device), run
    ``main`` once on ``input_arrays`` and time it. Returns (outputs as numpy arrays, Timing in ms)."""
    if profile.runner.kind == "rpc":
        from automc.latency.remote import run_on_device

        return run_on_device(library, input_arrays, profile)
    import tvm

    return _run_local(tvm.runtime.load_module(str(library)), input_arrays, profile)


def _run_local(module, input_arrays: list[np.ndarray], profile: HardwareProfile) -> tuple[list[np.ndarray], Timing]:
    """Run ``main`` of an executable or loaded library on this CPU once (the warm-up: the first
    call pays allocation and page faults), then time it. Returns (outputs, Timing in ms)."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(module, dev)
    args = [tvm.runtime.tensor(a, dev) for a in input_arrays]
    out = vm["main"](*args)
    outputs = [o.numpy() for o in out] if not hasattr(out, "numpy") else [out.numpy()]
    return outputs, time_vm(vm, dev, args, profile)
