"""Time compiled Relax code with TVM's time_evaluator: on this host, or on the profile's
device through a TVM RPC tracker when its runner is ``rpc`` (see ``remote``)."""

from __future__ import annotations

import os
import warnings
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


def task_calls(mod) -> list[TaskCall]:
    """The fused tasks ``main`` of a lowered Relax module calls, in order (see ``fused_module``)."""
    import tvm
    from tvm import relax

    from automc.deploy.build import fused_module

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


def _random_tensor(shape: tuple[int, ...], dtype: str, dev, rng: np.random.Generator):
    import tvm

    if dtype.startswith(("int", "uint")):
        data = rng.integers(0, 100, size=shape).astype(dtype)
    else:
        data = rng.uniform(-1, 1, size=shape).astype(dtype)
    return tvm.runtime.tensor(data, dev)


def time_tasks(executable, calls: list[TaskCall], profile: HardwareProfile) -> list[Timing | None]:
    """Each task of a compiled model timed on its own where the profile measures (None for a
    call the VM runs as a builtin, e.g. reshape): ``tuning.repeat`` repeats of at least
    ``tuning.task_min_repeat_ms`` ms, on random arguments of the call's shapes and dtypes.

    Timing them one by one is what puts a measured number on each fused kernel as it runs in
    the model (epilogues, residual adds, quantizations included). On the profile's 2 threads
    here the demo's tasks alone make up about two thirds of the whole model (0.18 of 0.27 ms):
    the rest is the VM's work between tasks and each task reading what the other core wrote,
    which ``predictor.fit_graph_pricing`` prices from whole-model measurements.
    """
    library = executable.mod.imports[0]  # the compiled kernels, beside the VM's bytecode
    present = [c for c in calls if library.implements_function(c.name)]
    if profile.runner.kind == "rpc":
        from automc.latency.remote import time_tasks_remote

        times = iter(time_tasks_remote(library, present, profile))
    else:
        import tvm

        use_profile_threads(profile)
        times = iter(time_library_tasks(library, tvm.cpu(), present, profile))
    return [next(times) if library.implements_function(c.name) else None for c in calls]


def time_library_tasks(library, dev, calls: list[TaskCall], profile: HardwareProfile) -> list[Timing]:
    """``time_tasks`` on a kernel library loaded on ``dev`` (this host's or a device's); every
    call must be one of its functions."""
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

    use_profile_threads(profile)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(module, dev)
    args = [tvm.runtime.tensor(a, dev) for a in input_arrays]
    out = vm["main"](*args)
    outputs = [o.numpy() for o in out] if not hasattr(out, "numpy") else [out.numpy()]
    return outputs, time_vm(vm, dev, args, profile)
