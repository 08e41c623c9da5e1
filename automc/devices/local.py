"""The device runner for this host's CPU."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from automc._host import host_cpu_flags, host_description
from automc.devices.base import DeviceRunner
from automc.devices.timing import TaskCall, Timing, time_library_tasks, time_vm
from automc.errors import UserInputError
from automc.profiles import HardwareProfile


def use_profile_threads(profile: HardwareProfile) -> int:
    """Make this process's TVM CPU kernels, and the tuning workers it starts from now on, run on
    the profile's ``num-cores`` threads (``HardwareProfile.threads``); returns that count.

    TVM's thread pool takes its size from ``TVM_NUM_THREADS`` when kernels launch. Left unset on
    this 2-vCPU host it reported 1 thread yet ran slower than an explicit 1 (the tiny
    transformer 250 µs vs 98 µs; 127 µs on 2 threads, the profile's cores): every latency
    automc stores, predicts and checks is for the profile's thread count, so it is set, never
    left to that default. An RPC device's server sets its own (start it with
    ``TVM_NUM_THREADS``)."""
    global _threads_set
    wanted, was = str(profile.threads), os.environ.get("TVM_NUM_THREADS")
    if was not in (None, wanted, _threads_set):  # the user's own value, not one set here before
        warnings.warn(f"TVM_NUM_THREADS={was} is overridden by profile '{profile.name}' (num-cores {wanted}): "
                      "its latencies are for that many threads; edit the profile's target to change it",
                      stacklevel=2)
    os.environ["TVM_NUM_THREADS"] = _threads_set = wanted
    return profile.threads


_threads_set: str | None = None  # the value use_profile_threads last set


def run_local(module, input_arrays: list[np.ndarray], profile: HardwareProfile) -> tuple[list[np.ndarray], Timing]:
    """Run ``main`` of an executable or loaded library on this CPU once (the warm-up: the first
    call pays allocation and page faults), then time it. Returns (outputs, Timing in ms)."""
    import tvm
    from tvm import relax

    use_profile_threads(profile)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(module, dev)
    args = [tvm.runtime.tensor(a, dev) for a in input_arrays]
    out = vm["main"](*args)
    outputs = [o.numpy() for o in out] if not hasattr(out, "numpy") else [out.numpy()]
    return outputs, time_vm(vm, dev, args, profile)


class LocalRunner(DeviceRunner):
    """Runs the profile's code on this host's CPU, on the profile's threads."""

    kind = "local"

    @property
    def on_this_host(self) -> bool:
        return True

    @property
    def measurable_here(self) -> bool:
        """An LLVM target for this host, and every CPU feature the target's code uses."""
        p = self.profile
        if p.target_kind != "llvm" or p.host is not None:
            return False
        return set(p.requires_cpu_flags) <= host_cpu_flags()

    def why_not_measurable(self, timeout_s: float = 2.0) -> str:
        p = self.profile
        if p.target_kind != "llvm" or p.host is not None:
            return f"target '{p.target_kind}' is not this host"
        missing = sorted(set(p.requires_cpu_flags) - host_cpu_flags())
        return f"this host's CPU lacks {missing}" if missing else ""

    def require_measurable(self) -> None:
        if not self.measurable_here:
            raise UserInputError(f"--profile {self.profile.name}: cannot measure here ({self.why_not_measurable()}); "
                                 "its latencies are uncalibrated roofline estimates. Calibrate a profile this host "
                                 "runs (see `automc profiles`)")

    @property
    def measured_on(self) -> str:
        return host_description()

    @property
    def stored_measurements_apply(self) -> bool:
        # the store holds this host's measurements: they describe a profile only if it runs here
        return self.measurable_here

    def unmeasurable_note(self, why_not: str) -> str:
        return f"profile {self.profile.name} is UNCALIBRATED here ({why_not}): latencies are roofline estimates"

    def time_executable(self, executable, input_arrays: list[np.ndarray]) -> Timing:
        return run_local(executable, input_arrays, self.profile)[1]

    def run_library(self, library: str | Path,
                    input_arrays: list[np.ndarray]) -> tuple[list[np.ndarray], Timing]:
        import tvm

        return run_local(tvm.runtime.load_module(str(library)), input_arrays, self.profile)

    def time_tasks(self, library, calls: list[TaskCall]) -> list[Timing]:
        import tvm

        use_profile_threads(self.profile)
        return time_library_tasks(library, tvm.cpu(), calls, self.profile)

    def tuning_workers(self, ms, initializer: Callable[[], None]):
        """Local worker processes: one build worker (on 2 cores more workers time out every build)."""
        evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20)
        use_profile_threads(self.profile)  # MetaSchedule's trial workers inherit it
        return (ms.builder.LocalBuilder(max_workers=1, timeout_sec=60, initializer=initializer),
                ms.runner.LocalRunner(evaluator, initializer=initializer))
