"""The measurement store: one record per key, kept per device, lowering version and thread count."""

from __future__ import annotations

import json
import os

import pytest

from automc.deploy.lower import LOWERING_VERSION
from automc.latency.measure import Timing
from automc.latency.store import MeasurementStore
from automc.profiles import load_profile

T = Timing(median_ms=1.5, min_ms=1.4, max_ms=1.7, repeats=5)


def _rpc(key: str):
    arm = load_profile("arm-cpu")
    return arm.model_copy(update={"runner": arm.runner.model_copy(update={"device_key": key})})


def test_records_survive_a_reopen_and_stay_with_their_device(tmp_path):
    store = MeasurementStore(_rpc("board-a"), root=tmp_path)
    store.add("k1", T, trials=4, spec={"op": "dense"})
    again = MeasurementStore(_rpc("board-a"), root=tmp_path)
    assert again.get("k1").median_ms == 1.5 and again.get("k1").host == "rpc device 'board-a'"
    # another board behind the same profile file measured nothing yet
    assert "k1" not in MeasurementStore(_rpc("board-b"), root=tmp_path)


def test_measurements_of_another_lowering_are_ignored(tmp_path, host_profile):
    store = MeasurementStore(host_profile, root=tmp_path)
    store.add("k1", T, trials=4)
    rec = json.loads(store.path.read_text())
    rec.update(key="old", lowering=LOWERING_VERSION - 1)
    with store.path.open("a") as f:
        f.write(json.dumps(rec) + "\n")
    reopened = MeasurementStore(host_profile, root=tmp_path)
    assert "k1" in reopened and "old" not in reopened


def test_measurements_on_another_thread_count_are_ignored(tmp_path, host_profile):
    store = MeasurementStore(host_profile, root=tmp_path)
    rec = store.add("k1", T, trials=4)
    assert rec.threads == host_profile.threads == int(host_profile.target["num-cores"])
    old = {**rec.__dict__, "key": "untold"}
    del old["threads"]  # recorded before the thread count was set: TVM's default, not the profile's
    with store.path.open("a") as f:
        f.write(json.dumps(old) + "\n")
    more = host_profile.model_copy(update={"target": {**host_profile.target, "num-cores": host_profile.threads + 1}})
    assert "k1" in MeasurementStore(host_profile, root=tmp_path)
    assert "untold" not in MeasurementStore(host_profile, root=tmp_path)
    assert "k1" not in MeasurementStore(more, root=tmp_path)


def test_a_user_thread_count_that_the_profile_overrides_is_named(monkeypatch, host_profile):
    from automc.latency.measure import use_profile_threads

    monkeypatch.setenv("TVM_NUM_THREADS", "7")
    with pytest.warns(UserWarning, match="TVM_NUM_THREADS=7 is overridden"):
        assert use_profile_threads(host_profile) == host_profile.threads
    assert os.environ["TVM_NUM_THREADS"] == str(host_profile.threads)


def test_switching_profiles_does_not_warn(host_profile):
    """A value automc set itself (another profile's count) is not the user's: no warning."""
    import warnings

    from automc.latency.measure import use_profile_threads

    other = host_profile.model_copy(update={"target": {**host_profile.target, "num-cores": host_profile.threads + 1}})
    use_profile_threads(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert use_profile_threads(host_profile) == host_profile.threads
