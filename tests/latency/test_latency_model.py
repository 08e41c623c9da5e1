"""Real TVM builds and measurements on this host: tuning, the store, predictors, roofline."""

from __future__ import annotations

import time

import pytest

from automc.latency.calibrate import calibrate_model, measure_kernel, predictor_for
from automc.latency.kernels import kernel_module
from automc.latency.predictor import CalibratedPredictor, RooflinePredictor
from automc.latency.store import MeasurementStore
from automc.profiles import load_profile
from automc.search.runner import calibration_candidates
from automc.types import KernelSpec

PW = KernelSpec(op="conv2d", batch=1, in_channels=32, out_channels=32, height=8, width=8, act="relu6")


def test_tuned_kernel_is_measured_once_and_stored(tmp_path, host_profile):
    """MetaSchedule (2 trials) on one small kernel: records land in the profile's tuning
    database, the timing in the store, and a second request builds nothing."""
    from automc.deploy.build import open_database

    tuned = host_profile.model_copy(update={"name": "tuned-test", "tuning": host_profile.tuning.model_copy(
        update={"trials_per_kernel": 2, "repeat": 3, "min_repeat_ms": 10})})
    store = MeasurementStore("t", root=tmp_path)
    t_tuned = measure_kernel(PW, tuned, store)
    assert t_tuned > 0 and PW.key in store and store.get(PW.key).trials == 2
    records = open_database(tuned).get_all_tuning_records()
    assert len(records) >= 2 and all(len(r.trace.insts) > 0 for r in records)
    start = time.perf_counter()
    assert measure_kernel(PW, tuned, store) == t_tuned
    assert time.perf_counter() - start < 0.01
    # the file survives a reopen (a killed calibration resumes)
    assert MeasurementStore("t", root=tmp_path).get(PW.key).median_ms == t_tuned


def test_int8_kernel_module_is_integer():
    mod = kernel_module(KernelSpec(**{**PW.to_dict(), "dtype": "int8"}))
    text = mod.script()
    assert 'out_dtype="int32"' in text and 'dtype="uint8"' in text


def test_calibration_reuses_store_and_predicts(demo, quick_profile, tmp_path):
    import automc.api as api

    ctx = api.prepare(demo.model, demo.example_input, demo.evaluate, quick_profile, "default", demo.calib_batches)
    candidates = calibration_candidates(ctx.space, n_random=4)
    store = MeasurementStore(quick_profile.name, root=tmp_path)  # empty, whatever the cache holds
    first = calibrate_model(ctx.model, demo.example_input, *candidates, quick_profile, budget_s=40, store=store)
    assert first.wanted > 20 and first.measured >= 2
    second = calibrate_model(ctx.model, demo.example_input, *candidates, quick_profile, budget_s=0,
                             store=MeasurementStore(quick_profile.name, root=tmp_path))
    assert second.measured == 0 and second.reused >= first.measured
    predictor = predictor_for(ctx.model, demo.example_input, quick_profile, store)
    assert isinstance(predictor, CalibratedPredictor) and predictor.source == "calibrated"
    rec = next(r for r in store.records() if r.spec)
    spec = KernelSpec.from_dict(rec.spec)
    assert predictor.kernel_ms(spec) == rec.median_ms         # exact hit
    unseen = KernelSpec(**{**spec.to_dict(), "out_channels": spec.out_channels + 3})
    assert predictor.kernel_ms(unseen) > 0                     # regression
    start = time.perf_counter()
    for _ in range(100):
        predictor.predict([spec] * 18)
    assert (time.perf_counter() - start) / 100 < 1e-3


def test_uncalibrated_profiles_fall_back_to_roofline(demo):
    for name in ("arm-cpu", "cuda-gpu"):
        profile = load_profile(name)
        assert not profile.measurable_here and profile.why_not_measurable()
        predictor = predictor_for(demo.model, demo.example_input, profile)
        assert isinstance(predictor, RooflinePredictor) and predictor.source == "uncalibrated"
        # roofline: the int8 kernel is never slower than its fp32 twin at these peaks
        int8 = KernelSpec(**{**PW.to_dict(), "dtype": "int8"})
        assert 0 < predictor.kernel_ms(int8) <= predictor.kernel_ms(PW)
