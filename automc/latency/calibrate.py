"""Calibration: compile whole candidate models, time each of their fused tasks, store once.

The unit of latency is the fused task as it runs inside a whole model (a conv with its
epilogue: activation, residual add, the next layer's quantization), not a layer compiled on its
own: measured here, an int8 model's tasks fused differently from standalone int8 layers and the
sum of those layers missed the model by half. So calibration compiles the candidates the search
will need (the uniform baselines first, then random candidates), times each task of each on its
own (``measure.time_tasks``) and stores it under its ``KernelSpec``, and times the whole model
too: what the whole takes beyond its tasks is the per-model overhead the predictor adds.
Candidates whose kernels are all stored are skipped; a killed calibration resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from automc.compress import apply_candidate
from automc.deploy.x86 import BLOCK, blocked_shape
from automc.deploy.build import open_database
from automc.deploy.compile import CompiledCandidate, compile_candidate
from automc.deploy.lower import kernel_specs
from automc.devices import TaskCall, Timing, device_runner, median_timing
from automc.latency.measure import time_executable, time_tasks
from automc.latency.predictors import CalibratedPredictor, LatencyPredictor, RooflinePredictor, fit_graph_pricing
from automc.latency.store import MeasurementStore
from automc.profiles import HardwareProfile
from automc.types import Candidate, KernelSpec


@dataclass(frozen=True)
class CalibrationReport:
    """What a calibration run did: candidate models measured now / skipped (all their kernels
    stored), distinct kernels measured now, seconds, and the fitted per-model overhead (ms; of
    the calibrated model's own wholes when a dozen are stored, see ``fit_graph_pricing``)."""  # noqa

    models_wanted: int
    models_measured: int
    models_reused: int
    kernels_measured: int
    seconds: float
    overhead_ms: float


@dataclass(frozen=True)
class ModelMeasurement:
    """A whole model compiled and timed: its kernels, the timing of each layer kernel's task
    inside it (None for graph ops, and for all when the tasks could not be told apart, see
    ``match_tasks``) and of the whole."""

    kernels: tuple[KernelSpec, ...]
    kernel_timings: tuple[Timing | None, ...]
    whole: Timing


def model_key(kernels: Sequence[KernelSpec], example_input: torch.Tensor) -> str:
    """A store key for a whole-model measurement: models running the same kernels in the same
    order on the same input take the same time, whatever their weights. The uncompressed
    model's key names its architecture: every candidate compressed from it records it
    (``Measurement.architecture``), and its predictor prices its graph from them."""
    text = "\n".join(k.key for k in kernels) + str(tuple(example_input.shape))
    return "model:" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _task_of(spec: KernelSpec, call: TaskCall) -> bool:
    """Is ``call`` the fused task that runs ``spec``? Checked on shapes and dtypes."""
    name = call.name
    (in_shape, in_dtype), (out_shape, out_dtype) = call.args[0], call.output
    if (len(in_shape) == 5, len(out_shape) == 5) != (spec.blocked_in, spec.blocked_out):
        return False  # another layout: another kernel
    nchw = (spec.batch, spec.in_channels, spec.height, spec.width)
    data_shape = blocked_shape(nchw) if spec.blocked_in else nchw
    if spec.op == "quantize":  # (rows × features for a transformer's tokens: the same count)
        return ("conv2d" not in name and "matmul" not in name and "round" in name
                and int(np.prod(out_shape)) == int(np.prod(data_shape)) and out_dtype == spec.out_dtype)
    integer_in = in_dtype in ("int8", "uint8", "int16")  # int16: u8 / s8 values, on AVX2
    if (integer_in != (spec.dtype == "int8") or out_dtype != spec.out_dtype
            or (in_dtype != "int16" and (in_dtype == "int8") != spec.signed_in)):
        return False
    # an activation argument beside the data is the residual; constants are not (on a 1×1
    # output plane a per-channel bias has the output's shape, and was once taken for one)
    residual = any(shape == out_shape and not const
                   for (shape, _), const in zip(call.args[1:-1], call.constant[1:]))
    # a residual that is the conv's own input (a same-shape block with an identity shortcut)
    # reaches the fused task once, as its data: no separate argument shows it
    residual = residual or (spec.residual and in_shape == out_shape)
    if spec.op == "dense":
        return ("matmul" in name and in_shape[-1] == spec.in_channels and out_shape[-1] == spec.out_channels
                and int(np.prod(in_shape[:-1])) == spec.batch and len(call.args) > 2)
    return ("conv2d" in name and in_shape == data_shape
            and out_shape[1] == (-(-spec.out_channels // BLOCK) if spec.blocked_out else spec.out_channels)
            and residual == spec.residual)


def match_tasks(kernels: Sequence[KernelSpec], calls: Sequence[TaskCall]) -> list[int | None] | None:
    """For each kernel, the index into ``calls`` of its task (None for a graph op, which is
    priced from whole models, not timed alone), matched in order; None when a layer kernel
    finds no task (the model's tasks do not line up with ``kernel_specs``; nothing is stored)."""
    index: list[int | None] = []
    at = 0
    for k in kernels:
        if not k.is_layer:
            index.append(None)
            continue
        while at < len(calls) and not _task_of(k, calls[at]):
            at += 1
        if at == len(calls):
            return None
        index.append(at)
        at += 1
    return index


def measure_model(compressed: nn.Module, example_input: torch.Tensor, profile: HardwareProfile,
                  database=None) -> ModelMeasurement:
    """Lower, tune the tasks not yet in the database, compile, then time the whole model and
    each of its layer kernels' tasks where the profile measures (``measure_compiled``)."""
    return measure_compiled(compile_candidate(compressed, None, example_input, profile, database=database))


def measure_compiled(compiled: CompiledCandidate) -> ModelMeasurement:
    """Time a compiled model whole and each of its layer kernels' tasks where its profile measures."""
    profile, example_input, executable = compiled.profile, compiled.example_input, compiled.executable
    kernels = compiled.kernels
    calls = list(compiled.tasks)
    index = match_tasks(kernels, calls)
    tasks = [calls[i] for i in index if i is not None] if index is not None else []
    # every task twice and the whole model three times, before, between and after the two
    # passes: this host's noise comes in bursts and phases of seconds, and one timing caught
    # in one put calibration models 9% (a test's demo 40%) and kernels up to 40% off; the
    # fastest of spaced timings (``Timing.latency_ms``) is what a later timing agrees with
    wholes = [time_executable(executable, [example_input.numpy()], profile)]
    passes: list[list[Timing | None]] = []
    for _ in range(2):
        passes.append(time_tasks(executable, tasks, profile) if tasks else [])
        wholes.append(time_executable(executable, [example_input.numpy()], profile))
    timed = [None if a is None or b is None else median_timing([a, b]) for a, b in zip(*passes)]
    whole = median_timing(wholes)
    if index is None:
        return ModelMeasurement(kernels, (None,) * len(kernels), whole)
    it = iter(timed)
    return ModelMeasurement(kernels, tuple(next(it) if i is not None else None for i in index), whole)


def store_measurement(m: ModelMeasurement, example_input: torch.Tensor, profile: HardwareProfile,
                      store: MeasurementStore, retimed: set[str] | None = None,
                      architecture: str | None = None) -> int:
    """Store a model's new kernels (the median over their occurrences in it) and the whole
    model, with the ``architecture`` it was compressed from (the uncompressed model's
    ``model_key``; None for a probe); returns how many kernels were new.

    ``retimed`` is given on a retime pass (``calibrate --retime``): the keys it has stored
    already. A stored key not among them gets this timing as one more pass of its record
    (``MeasurementStore.add``) and joins them, so every record gains one pass however many
    models share its kernel: the fastest of 57 passes (a quantize in every MobileNetV2) sits
    lower than the fastest of two, and would bias the kernels models share against the rest."""

    def takes(key: str) -> bool:
        if retimed is None:
            return key not in store
        if key in retimed:
            return False
        retimed.add(key)
        return True

    seen: dict[KernelSpec, list[Timing]] = defaultdict(list)
    for spec, timing in zip(m.kernels, m.kernel_timings):
        if timing is not None:
            seen[spec].append(timing)
    new = 0
    for spec, timings in seen.items():
        if takes(spec.key):
            new += spec.key not in store
            store.add(spec.key, sorted(timings, key=lambda t: t.latency_ms)[len(timings) // 2],
                      profile.tuning.trials_per_kernel, spec.to_dict())
    key = model_key(m.kernels, example_input)
    if takes(key):
        store.add(key, m.whole, profile.tuning.trials_per_kernel, kernels=[k.key for k in m.kernels],
                  architecture=architecture)
    return new


def require_measurable(profile: HardwareProfile) -> None:
    """Raise a UserInputError with the fix unless the profile's kernels can be measured now:
    on this host, or (rpc runner) on its device through the tracker, which is probed."""
    device_runner(profile).require_measurable()


def calibrate_model(model: nn.Module, example_input: torch.Tensor, first: Sequence[Candidate],
                    sampled: Sequence[Candidate], profile: HardwareProfile, budget_s: float = 600.0,
                    on_progress: Callable[[int, int, Candidate | None], None] | None = None,
                    store: MeasurementStore | None = None, retimed: set[str] | None = None) -> CalibrationReport:
    """Measure the ``first`` candidates (the baselines) in order, then the ``sampled`` ones in
    adaptive order, as whole models (see the module doc), until ``budget_s`` seconds have passed
    (checked between models).

    Adaptive sampling, after nn-Meter: the next sampled candidate is the one whose kernels not
    yet stored weigh most in predicted time (the current predictor, refitted after every model),
    so the budget goes where the predictor knows least about what matters. A candidate whose
    model and kernels are all stored is skipped, never re-measured; a killed calibration resumes.
    Given ``retimed`` (a retime pass, see ``store_measurement``), the stored ones are timed
    again too, in the same order, each record gaining one pass (the fastest of the passes counts).
    Every whole measured or met here is recorded as ``model``'s (its ``model_key``): its
    predictor prices the graph from them (``predictors.fit_graph_pricing``).
    """
    require_measurable(profile)
    store = store if store is not None else MeasurementStore(profile)
    start = time.perf_counter()
    calib = (example_input,)  # shapes only: activation ranges do not change a kernel's time
    database = open_database(profile)  # opened once: a JSON file that grows with every task
    # kernel lists only (the adaptive order needs them all), the uncompressed model's first (its
    # model key names the architecture); a model is compressed again when measured, so memory
    # holds one compressed model, not the whole pool (69 MobileNetV2s)
    candidates = list(first) + list(sampled)
    models = itertools.chain([model], (apply_candidate(model, c, example_input, calib) for c in candidates))
    uncompressed, *lists = (kernel_specs(m, example_input, profile) for m in models)
    architecture = model_key(uncompressed, example_input)
    pool = list(zip(candidates, lists))
    measured = reused = new_kernels = 0
    pending = list(range(len(first)))  # the baselines, in order
    left = list(range(len(first), len(pool)))
    while pending or left:
        if not pending:
            pending.append(_most_unknown(left, pool, store, profile))
            left.remove(pending[0])
        i = pending.pop(0)
        candidate, kernels = pool[i]
        if on_progress:
            on_progress(measured + reused, len(pool), candidate)
        if _skips(kernels, example_input, store, retimed):
            store.tag_architecture(model_key(kernels, example_input), architecture)
            reused += 1
            continue
        if time.perf_counter() - start > budget_s:
            break
        compiled = compile_candidate(model, candidate, example_input, profile, calib, database)
        new_kernels += store_measurement(measure_compiled(compiled), example_input, profile, store, retimed,
                                         architecture)
        measured += 1
    if on_progress:
        on_progress(len(pool), len(pool), None)
    return CalibrationReport(len(pool), measured, reused, new_kernels, time.perf_counter() - start,
                             fit_graph_pricing(store, architecture).overhead_ms)


def calibrate_probes(profile: HardwareProfile, n: int = 16, budget_s: float = 600.0, seed: int = 0,
                     on_progress: Callable[[int, int, Candidate | None], None] | None = None,
                     store: MeasurementStore | None = None, retimed: set[str] | None = None) -> CalibrationReport:
    """Measure ``n`` probe networks (``probes.probe_networks``: random small CNNs covering the
    kernel space beyond any one model's search space) until ``budget_s`` seconds have passed;
    stored probes are skipped, so this resumes too (given ``retimed`` they are timed again, as
    ``calibrate_model`` does)."""
    from automc.latency.probes import probe_networks

    require_measurable(profile)
    store = store if store is not None else MeasurementStore(profile)
    start = time.perf_counter()
    database = open_database(profile)
    measured = reused = new_kernels = 0
    for i, probe in enumerate(probe_networks(n, seed)):
        if on_progress:
            on_progress(i, n, probe.candidate)
        x = probe.example_input
        compressed = apply_candidate(probe.model, probe.candidate, x, (x,)).eval()
        if _skips(kernel_specs(compressed, x, profile), x, store, retimed):
            reused += 1
            continue
        if time.perf_counter() - start > budget_s:
            break
        new_kernels += store_measurement(measure_model(compressed, x, profile, database), x, profile, store, retimed)
        measured += 1
    if on_progress:
        on_progress(n, n, None)
    return CalibrationReport(n, measured, reused, new_kernels, time.perf_counter() - start,
                             fit_graph_pricing(store).overhead_ms)


def _is_stored(kernels: Sequence[KernelSpec], example_input: torch.Tensor,
               keys: MeasurementStore | set[str]) -> bool:
    """Is this model among ``keys`` (a store, or the keys a retime pass has timed) whole, with
    every layer kernel? (Then it is not timed again.)"""
    return model_key(kernels, example_input) in keys and all(k.key in keys for k in kernels if k.is_layer)


def _skips(kernels: Sequence[KernelSpec], example_input: torch.Tensor, store: MeasurementStore,
           retimed: set[str] | None) -> bool:
    """Is there nothing to time in this model: all stored, or on a retime pass all retimed?"""
    return _is_stored(kernels, example_input, store if retimed is None else retimed)


def _most_unknown(indices: list[int], pool: list, store: MeasurementStore, profile: HardwareProfile) -> int:
    """The pool index whose kernels missing from the store add up to the most predicted ms."""
    try:
        price = CalibratedPredictor(store).kernel_ms
    except ValueError:  # too few kernels stored to fit a regressor yet
        price = RooflinePredictor(profile).kernel_ms

    def unknown_ms(i: int) -> float:
        return sum(price(k) for k in set(pool[i][1]) if k.key not in store)

    return max(indices, key=unknown_ms)


def is_calibrated(kernels: Sequence[KernelSpec], example_input: torch.Tensor, store: MeasurementStore) -> bool:
    """Has the uncompressed model running ``kernels`` (``deploy.kernel_specs`` of it) been
    measured whole with all its kernels?"""
    return _is_stored(kernels, example_input, store)


def predictor_for(kernels: Sequence[KernelSpec], example_input: torch.Tensor, profile: HardwareProfile,
                  store: MeasurementStore | None = None) -> LatencyPredictor:
    """The calibrated predictor when the profile has been measured, else the roofline (loudly);
    it prices the graph from the stored wholes of the uncompressed model running ``kernels``
    (``deploy.kernel_specs`` of it) when calibration stored enough.

    A local profile counts only when this host runs it; an rpc profile's store holds its
    device's measurements, valid whether or not the device is reachable now.
    """
    if not device_runner(profile).stored_measurements_apply:
        return RooflinePredictor(profile)
    store = store if store is not None else MeasurementStore(profile)
    try:
        return CalibratedPredictor(store, model_key(kernels, example_input))
    except ValueError:  # fewer than two kernels measured
        return RooflinePredictor(profile)
