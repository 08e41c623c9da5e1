"""Time a compiled Relax executable on this host with TVM's time_evaluator."""

from __future__ import annotations

from dataclasses import dataclass

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


def time_executable(executable, input_arrays: list[np.ndarray], profile: HardwareProfile) -> Timing:
    """Run ``main`` of a Relax executable on the local CPU: warm-up, then ``repeat`` timed runs
    of at least ``min_repeat_ms`` each (so microsecond kernels are averaged over many calls)."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(executable, dev)
    args = [tvm.runtime.tensor(a, dev) for a in input_arrays]
    vm["main"](*args)  # warm-up: first call pays allocation and page faults
    evaluator = vm.time_evaluator("main", dev, number=1, repeat=profile.tuning.repeat,
                                  min_repeat_ms=int(profile.tuning.min_repeat_ms))
    res = np.array(evaluator(*args).results) * 1e3
    return Timing(float(np.median(res)), float(res.min()), float(res.max()), len(res))
