"""The device runner: chosen by the profile's runner kind, answering for its device."""

from __future__ import annotations

import pytest

from automc._host import host_cpu_flags, host_description
from automc.devices import DeviceRunner, LocalRunner, RpcRunner, device_runner, register_device_runner
from automc.devices import registry
from automc.errors import UserInputError
from automc.profiles import load_profile


def test_each_profile_gets_the_runner_of_its_kind():
    assert isinstance(device_runner(load_profile("x86-avx2")), LocalRunner)
    assert isinstance(device_runner(load_profile("arm-cpu")), RpcRunner)


def test_local_runner_measures_where_the_cpu_has_the_profiles_flags():
    vnni = load_profile("x86-vnni")
    runner = device_runner(vnni)
    here = set(vnni.requires_cpu_flags) <= host_cpu_flags()
    assert runner.on_this_host and runner.measurable_here == here == runner.stored_measurements_apply
    assert (runner.why_not_measurable() == "") == here
    assert runner.measured_on == host_description() and runner.via == ""


def test_local_runner_refuses_a_target_that_is_not_this_host():
    runner = device_runner(load_profile("cuda-gpu").model_copy(update={"runner": load_profile("x86-avx2").runner}))
    assert not runner.measurable_here and "is not this host" in runner.why_not_measurable()
    with pytest.raises(UserInputError, match="cannot measure here"):
        runner.require_measurable()
    assert "UNCALIBRATED" in runner.unmeasurable_note("why")


def test_rpc_runner_keeps_its_devices_measurements_when_unreachable():
    profile = load_profile("arm-cpu")
    r = profile.runner
    runner = device_runner(profile.model_copy(update={"runner": r.model_copy(update={"device_key": ""})}))
    assert not runner.on_this_host and not runner.measurable_here and runner.stored_measurements_apply
    assert "device_key is empty" in runner.why_not_measurable()
    assert runner.measured_on == "rpc device ''"
    assert f"{r.tracker_host}:{r.tracker_port}" in device_runner(profile).via


def test_a_registered_kind_is_chosen_by_name(monkeypatch):
    class Quiet(LocalRunner):
        kind = "quiet"

    monkeypatch.setattr(registry, "_RUNNERS", dict(registry._RUNNERS))
    register_device_runner("local", Quiet)
    runner = device_runner(load_profile("x86-avx2"))
    assert isinstance(runner, Quiet) and isinstance(runner, DeviceRunner)
