"""The TVM RPC measurement path, end to end on loopback: a real tracker and RPC server on
127.0.0.1 stand in for a remote device (the host target, so the path is tested, not ARM timing)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from automc.errors import UserInputError
from kernel_modules import kernel_input, kernel_module
from automc.latency.measure import run_library, time_executable
from automc.devices import device_runner
from automc.profiles import HardwareProfile, load_profile
from automc.types import KernelSpec

LOOPBACK = "127.0.0.1"  # never any other address: an RPC server runs whatever it is sent
KEY = "automc-test-device"
SPEC = KernelSpec(op="conv2d", batch=1, in_channels=16, out_channels=16, height=8, width=8, act="relu6")


def _free_port() -> int:
    """A loopback port nothing listens on (the kernel picked it free; closed again at once)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _rpc_profile(tmp: Path, port: int, key: str = KEY, trials: int = 2) -> HardwareProfile:
    """x86-avx2 (this host's target) measured through the tracker at 127.0.0.1:``port``."""
    data = load_profile("x86-avx2").model_dump()
    data["name"] = f"rpc-loopback-{port}"
    data["runner"] = {"kind": "rpc", "tracker_host": LOOPBACK, "tracker_port": port, "device_key": key,
                      "session_timeout_s": 60}
    data["tuning"] = {"trials_per_kernel": trials, "repeat": 3, "min_repeat_ms": 20}
    path = tmp / f"rpc-{port}-{key}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(str(path))


@pytest.fixture(scope="module")
def tracker_port():
    """A real tvm.rpc tracker and an RPC server registered with it under KEY, both on loopback;
    yields the tracker's port. Both are separate processes, terminated afterwards."""
    from tvm import rpc
    from tvm.rpc.tracker import Tracker

    port = _free_port()
    tracker = Tracker(host=LOOPBACK, port=port, port_end=port + 1, silent=True)
    server = None
    try:
        server_port = _free_port()
        server = rpc.Server(host=LOOPBACK, port=server_port, port_end=server_port + 1,
                            tracker_addr=(LOOPBACK, tracker.port), key=KEY, silent=True)
        yield tracker.port
    finally:
        if server is not None:
            server.terminate()
        tracker.terminate()


@pytest.fixture(scope="module")
def rpc_profile(tracker_port, tmp_path_factory) -> HardwareProfile:
    profile = _rpc_profile(tmp_path_factory.mktemp("rpc"), tracker_port)
    deadline = time.monotonic() + 30
    while not device_runner(profile).measurable(1.0):  # the server registers with the tracker asynchronously
        assert time.monotonic() < deadline, "the RPC server never registered with the tracker"
        time.sleep(0.2)
    return profile


@pytest.fixture
def unreachable(tmp_path) -> HardwareProfile:
    return _rpc_profile(tmp_path, _free_port())


def test_kernel_measured_through_rpc_matches_local(rpc_profile, tmp_path):
    """One kernel timed on the RPC 'device' (this host through tracker + server) is within a
    loose factor of the same kernel timed locally, and its outputs are the local ones."""
    import tvm

    from automc.devices import export_library, tvm_target

    local = rpc_profile.model_copy(update={"runner": rpc_profile.runner.model_copy(update={"kind": "local"})})
    assert (device_runner(rpc_profile).measurable() and not device_runner(rpc_profile).measurable_here
            and device_runner(local).measurable_here)
    executable = tvm.compile(kernel_module(SPEC), tvm_target(rpc_profile))
    x = kernel_input(SPEC)
    here = time_executable(executable, [x], local)
    remote = time_executable(executable, [x], rpc_profile)  # exported, uploaded, timed remotely
    assert remote.median_ms > 0 and remote.repeats == 3
    assert 0.2 < remote.median_ms / here.median_ms < 5, (remote, here)
    # the export path: the written library itself, run and timed where the profile measures
    library = export_library(executable, tmp_path / "kernel.so", rpc_profile)
    (got,), timing = run_library(library, [x], rpc_profile)
    (want,), _ = run_library(library, [x], local)
    assert timing.median_ms > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_metaschedule_tunes_through_rpc_runner(rpc_profile, tmp_path):
    """Two MetaSchedule trials built here, run through RPCRunner: tuning records land in the
    database with real (finite, positive) run times."""
    from automc.deploy.build import import_meta_schedule
    from automc.deploy.build import tune

    ms = import_meta_schedule()
    db = ms.database.JSONDatabase(str(tmp_path / "w.json"), str(tmp_path / "r.json"), allow_missing=True)
    assert tune(kernel_module(SPEC), rpc_profile, database=db) >= 1
    records = db.get_all_tuning_records()
    assert records
    secs = [float(s) for r in records for s in (r.run_secs or [])]
    assert secs and all(0 < s < 1 for s in secs), secs


def test_unreachable_tracker_is_a_user_error_fast(unreachable, rpc_profile, tmp_path):
    """A closed tracker port, or a live tracker without the key: a UserInputError naming the
    profile, the tracker address and the fix, within seconds (no tvm connect retries)."""
    from automc.deploy.build import import_meta_schedule
    from automc.deploy.build import tune
    from automc.latency.calibrate import require_measurable

    where = f"{LOOPBACK}:{unreachable.runner.tracker_port}"
    start = time.perf_counter()
    assert not device_runner(unreachable).measurable()
    assert where in device_runner(unreachable).why_not_measurable()
    for attempt in (lambda: require_measurable(unreachable),
                    lambda: run_library(tmp_path / "never-built.so", [kernel_input(SPEC)], unreachable)):
        with pytest.raises(UserInputError) as err:
            attempt()
        msg = str(err.value)
        assert unreachable.name in msg and where in msg and "rpc_tracker" in msg and "tracker_port" in msg
    assert time.perf_counter() - start < 10
    # tuning refuses before starting its builder and runner processes
    ms = import_meta_schedule()
    db = ms.database.JSONDatabase(str(tmp_path / "w.json"), str(tmp_path / "r.json"), allow_missing=True)
    with pytest.raises(UserInputError, match=where):
        tune(kernel_module(SPEC), unreachable, database=db)
    # a live tracker that has no server under the key
    wrong_key = _rpc_profile(tmp_path, rpc_profile.runner.tracker_port, key="no-such-device")
    start = time.perf_counter()
    with pytest.raises(UserInputError, match="no server with key 'no-such-device'"):
        require_measurable(wrong_key)
    assert time.perf_counter() - start < 10
