"""Calibration: collect the kernels a model's space can produce, tune and measure them once.

Kernels are ordered by how much the search will need them (the uniform baselines' kernels
first, then by how often random candidates use them) and measured until the time budget runs
out; the regressor in ``predictor`` covers the rest. A whole-model measurement of the
uncompressed model gives the whole-graph factor (see ``predictor``).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from automc.compress import apply_candidate
from automc.deploy.build import compile_module, open_database, tune, tune_modules
from automc.deploy.lower import kernel_specs
from automc.deploy.relax_lowering import lower_to_relax
from automc.errors import UserInputError
from automc.latency.kernels import kernel_input, kernel_module
from automc.latency.measure import time_executable
from automc.latency.predictor import CalibratedPredictor, LatencyPredictor, RooflinePredictor
from automc.latency.store import MeasurementStore
from automc.profiles import HardwareProfile
from automc.types import Candidate, KernelSpec


@dataclass(frozen=True)
class CalibrationReport:
    """What a calibration run did: kernels wanted / measured now / already stored, seconds."""

    wanted: int
    measured: int
    reused: int
    seconds: float
    model_factor: float


def model_key(model: nn.Module, example_input: torch.Tensor) -> str:
    """A store key for a model's whole-graph measurement (architecture + input shape)."""
    text = repr(model) + str(tuple(example_input.shape))
    return "model:" + hashlib.sha1(text.encode()).hexdigest()[:16]


def collect_kernels(model: nn.Module, example_input: torch.Tensor, first: Sequence[Candidate],
                    sampled: Sequence[Candidate], profile: HardwareProfile) -> list[KernelSpec]:
    """Kernels of the ``first`` candidates (the baselines) in order, then those of ``sampled``
    candidates by how often they occur; deduplicated."""
    calib = (example_input,)  # shapes only: activation ranges do not change a kernel

    def kernels(c: Candidate) -> list[KernelSpec]:
        return kernel_specs(apply_candidate(model, c, example_input, calib), example_input, profile)

    ordered = list(dict.fromkeys(k for c in first for k in kernels(c)))
    counts: Counter[KernelSpec] = Counter(k for c in sampled for k in kernels(c))
    known = set(ordered)
    return ordered + [k for k, _ in counts.most_common() if k not in known]


def measure_kernel(spec: KernelSpec, profile: HardwareProfile, store: MeasurementStore) -> float:
    """Tune, compile and time one kernel (ms), unless the store has it already."""
    hit = store.get(spec.key)
    if hit is not None:
        return hit.median_ms
    mod = kernel_module(spec)
    database = open_database(profile)
    tune(mod, profile, database=database)
    return _time_and_store(spec, mod, profile, store, database)


def _time_and_store(spec: KernelSpec, mod, profile: HardwareProfile, store: MeasurementStore, database) -> float:
    """Compile a (tuned) kernel module with the database applied, time it, store it (ms)."""
    timing = time_executable(compile_module(mod, profile, database), [kernel_input(spec)], profile)
    return store.add(spec.key, timing, profile.tuning.trials_per_kernel, spec.to_dict()).median_ms


def measure_model(compressed: nn.Module, example_input: torch.Tensor, profile: HardwareProfile, database=None):
    """Lower, tune the tasks not yet in the database, compile and time a whole model.

    Returns (executable, Timing).
    """
    database = database if database is not None else open_database(profile)
    mod = lower_to_relax(compressed, example_input, profile)
    tune(mod, profile, database=database)
    executable = compile_module(mod, profile, database)
    return executable, time_executable(executable, [example_input.numpy()], profile)


def require_measurable(profile: HardwareProfile) -> None:
    """Raise a UserInputError with the fix unless the profile's kernels can be measured now:
    on this host, or (rpc runner) on its device through the tracker, which is probed."""
    if profile.runner.kind == "rpc":
        from automc.latency.remote import require_device

        require_device(profile)
        return
    if not profile.measurable_here:
        raise UserInputError(f"--profile {profile.name}: cannot measure here ({profile.why_not_measurable()}); "
                             "its latencies are uncalibrated roofline estimates. Calibrate a profile this host runs "
                             "(see `automc profiles`)")


def calibrate_model(model: nn.Module, example_input: torch.Tensor, first: Sequence[Candidate],
                    sampled: Sequence[Candidate], profile: HardwareProfile,
                    budget_s: float = 600.0, batch_size: int = 6,
                    on_progress: Callable[[int, int, KernelSpec | None], None] | None = None,
                    store: MeasurementStore | None = None) -> CalibrationReport:
    """Measure the kernels of ``first`` then ``sampled`` candidates (see ``collect_kernels``)
    until ``budget_s`` seconds have passed (checked between batches of ``batch_size`` kernels).

    Already-stored kernels are reused, never re-measured; a killed calibration resumes.
    """
    require_measurable(profile)
    store = store if store is not None else MeasurementStore(profile.name)
    start = time.perf_counter()
    kernels = collect_kernels(model, example_input, first, sampled, profile)
    reused = sum(k.key in store for k in kernels)
    measured = 0
    # opened once: the database is a JSON file that grows with every tuned task
    database = open_database(profile)
    todo = [k for k in kernels if k.key not in store]
    done = len(kernels) - len(todo)
    # batches: one MetaSchedule session tunes a batch's kernels together (see tune_modules)
    for b in range(0, len(todo), batch_size):
        if time.perf_counter() - start > budget_s:
            break
        batch = todo[b:b + batch_size]
        if on_progress:
            on_progress(done, len(kernels), batch[0])
        mods = [kernel_module(spec) for spec in batch]
        tune_modules(mods, profile, database=database)
        for spec, mod in zip(batch, mods):
            _time_and_store(spec, mod, profile, store, database)
            measured += 1
            done += 1
            if on_progress:
                on_progress(done, len(kernels), spec)
    if on_progress:
        on_progress(len(kernels), len(kernels), None)
    # Last, so that the fp32 kernels tuned above are database hits here and only the tasks
    # kernels alone never see (residual adds, pooling, head) are tuned now.
    key = model_key(model, example_input)
    if key not in store:
        _, timing = measure_model(model, example_input, profile, database)
        store.add(key, timing, profile.tuning.trials_per_kernel)
    factor = model_factor(model, example_input, profile, store)
    return CalibrationReport(len(kernels), measured, reused, time.perf_counter() - start, factor)


def model_factor(model: nn.Module, example_input: torch.Tensor, profile: HardwareProfile,
                 store: MeasurementStore, predictor: CalibratedPredictor | None = None) -> float:
    """Measured whole fp32 model ÷ the sum of its kernels measured alone (1.0 if not measured)."""
    whole = store.get(model_key(model, example_input))
    # a budget spent before any kernel was measured leaves nothing to divide by
    if whole is None or (predictor is None and sum(1 for r in store.records() if r.spec) < 2):
        return 1.0
    kernels = kernel_specs(model, example_input, profile)
    kernels_alone = sum((predictor or CalibratedPredictor(store)).kernel_ms(k) for k in kernels)
    return whole.median_ms / kernels_alone


def predictor_for(model: nn.Module, example_input: torch.Tensor, profile: HardwareProfile,
                  store: MeasurementStore | None = None) -> LatencyPredictor:
    """The calibrated predictor when the profile has been measured, else the roofline (loudly).

    A local profile counts only when this host runs it; an rpc profile's store holds its
    device's measurements, valid whether or not the device is reachable now.
    """
    if profile.runner.kind == "local" and not profile.measurable_here:
        return RooflinePredictor(profile)
    store = store if store is not None else MeasurementStore(profile.name)
    if sum(1 for r in store.records() if r.spec) < 2:
        return RooflinePredictor(profile)
    predictor = CalibratedPredictor(store)
    predictor.model_factor = model_factor(model, example_input, profile, store, predictor)
    return predictor
