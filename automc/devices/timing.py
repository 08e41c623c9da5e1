"""Timings of compiled code, and the TVM time_evaluator calls every device runner shares."""

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
    def latency_ms(self) -> float:
        """The latency the latency model stores, predicts and is checked against (ms): the
        fastest repeat's per-call mean. This shared host only ever adds time, in bursts and in
        phases of seconds to minutes (other tenants' vCPUs): re-timed later, a calibrated
        kernel's median moved 8.6% (median over 77 kernels, up to 40%), its minimum 5%, so the
        minimum is what two timings of one model agree on. Medians are reported beside it."""
        return self.min_ms

    @property
    def spread(self) -> float:
        """(max − min) / median: how noisy the measurement was."""
        return (self.max_ms - self.min_ms) / self.median_ms if self.median_ms else 0.0


def median_timing(timings: list[Timing]) -> Timing:
    """Several timings of one thing taken apart in time, as one: the median of their medians
    (a burst of host noise inflates one of three, not the result), the extremes of all (so
    its ``latency_ms`` is the fastest of them)."""
    return Timing(float(np.median([t.median_ms for t in timings])), min(t.min_ms for t in timings),
                  max(t.max_ms for t in timings), sum(t.repeats for t in timings))


@dataclass(frozen=True)
class TaskCall:
    """One call of a fused TVM task in a model's ``main``, in execution order: the task's
    symbol and the (shape, dtype) of each argument, the outputs last (a split writes several); ``constant`` says, per
    input argument, whether it is a bound constant (weights, scales, biases) rather than an
    activation."""

    name: str
    args: tuple[tuple[tuple[int, ...], str], ...]
    constant: tuple[bool, ...] = ()

    @property
    def output(self) -> tuple[tuple[int, ...], str]:
        return self.args[-1]


def _random_tensor(shape: tuple[int, ...], dtype: str, dev, rng: np.random.Generator):
    import tvm

    if dtype.startswith(("int", "uint")):
        data = rng.integers(0, 100, size=shape).astype(dtype)
    else:
        data = rng.uniform(-1, 1, size=shape).astype(dtype)
    return tvm.runtime.tensor(data, dev)


def time_library_tasks(library, dev, calls: list[TaskCall], profile: HardwareProfile) -> list[Timing]:
    """Each call timed on its own on a kernel library loaded on ``dev`` (this host's or a
    device's): ``tuning.repeat`` repeats of at least ``tuning.task_min_repeat_ms`` ms, on random
    arguments of the call's shapes and dtypes; every call must be one of its functions."""
    rng = np.random.default_rng(0)
    times: list[Timing] = []
    for call in calls:
        args = [_random_tensor(shape, dtype, dev, rng) for shape, dtype in call.args]
        evaluator = library.time_evaluator(call.name, dev, number=1, repeat=profile.tuning.repeat,
                                           min_repeat_ms=int(profile.tuning.task_min_repeat_ms))
        res = np.array(evaluator(*args).results) * 1e3
        times.append(Timing(float(np.median(res)), float(res.min()), float(res.max()), len(res)))
    return times


def time_vm(vm, dev, args: list, profile: HardwareProfile) -> Timing:
    """Time ``main`` of a (local or remote) Relax VirtualMachine on ``args`` (tensors already on
    ``dev``): ``tuning.repeat`` timed runs of at least ``tuning.min_repeat_ms`` ms each (so
    microsecond kernels are averaged over many calls). The caller has warmed it up."""
    # min_repeat_ms must be an int: time_evaluator's FFI signature rejects a float
    evaluator = vm.time_evaluator("main", dev, number=1, repeat=profile.tuning.repeat,
                                  min_repeat_ms=int(profile.tuning.min_repeat_ms))
    res = np.array(evaluator(*args).results) * 1e3
    return Timing(float(np.median(res)), float(res.min()), float(res.max()), len(res))
