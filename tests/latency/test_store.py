"""The measurement store: one record per key, kept per device, lowering version and thread count."""

from __future__ import annotations

import gzip
import json
import os
import time

import pytest

from automc.deploy.lower import lowering_version
from automc.devices import Timing
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


def test_a_line_torn_by_a_killed_writer_loses_only_itself(tmp_path):
    store = MeasurementStore(_rpc("board-a"), root=tmp_path)
    store.add("k1", T, trials=4)
    with store.path.open("a") as f:  # what kill -9 can leave: half a line, no newline
        f.write('{"key": "k2", "median_ms": 1.')
    MeasurementStore(_rpc("board-a"), root=tmp_path).add("k3", T, trials=4)
    again = MeasurementStore(_rpc("board-a"), root=tmp_path)
    assert "k1" in again and "k3" in again and "k2" not in again


def test_measurements_of_another_lowering_are_ignored(tmp_path, host_profile):
    store = MeasurementStore(host_profile, root=tmp_path)
    store.add("k1", T, trials=4)
    rec = json.loads(store.path.read_text())
    rec.update(key="old", lowering=lowering_version(host_profile) - 1)
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
    from automc.devices import use_profile_threads

    monkeypatch.setenv("TVM_NUM_THREADS", "7")
    with pytest.warns(UserWarning, match="TVM_NUM_THREADS=7 is overridden"):
        assert use_profile_threads(host_profile) == host_profile.threads
    assert os.environ["TVM_NUM_THREADS"] == str(host_profile.threads)


def test_switching_profiles_does_not_warn(host_profile):
    """A value automc set itself (another profile's count) is not the user's: no warning."""
    import warnings

    from automc.devices import use_profile_threads

    other = host_profile.model_copy(update={"target": {**host_profile.target, "num-cores": host_profile.threads + 1}})
    use_profile_threads(other)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert use_profile_threads(host_profile) == host_profile.threads


def test_shipped_measurements_calibrate_their_host_and_the_cache_wins(tmp_path, monkeypatch, host_profile):
    """The shipped file is read under the user's cache: this host's records count, another
    host's do not, new measurements go to the cache, and the cache's record of a key wins."""
    import automc.latency.store as store_mod

    shipped_dir, cache = tmp_path / "shipped", tmp_path / "cache"
    monkeypatch.setattr(store_mod, "SHIPPED_MEASUREMENTS_DIR", shipped_dir)
    monkeypatch.setenv("AUTOMC_CACHE", str(cache))
    monkeypatch.setenv("AUTOMC_SHIPPED_MEASUREMENTS", "1")
    measured = MeasurementStore(host_profile, root=tmp_path / "measured")
    here = measured.add("k-here", T, trials=4)
    shipped_dir.mkdir()
    other_host = {**here.__dict__, "key": "k-other", "host": "Some Other CPU (64 cpus, aarch64)"}
    again = {**here.__dict__, "key": "k-again", "min_ms": 9.0}
    shipped = gzip.compress("".join(json.dumps(r) + "\n" for r in (here.__dict__, other_host, again)).encode())
    store_mod.shipped_path(host_profile).write_bytes(shipped)

    store = MeasurementStore(host_profile)
    assert store.n_shipped == 2 and "k-here" in store and "k-other" not in store
    assert store.get("k-again").min_ms == 9.0
    store.add("k-again", T, trials=4)  # re-measured by the user: into the cache, never the shipped file
    assert store_mod.shipped_path(host_profile).read_bytes() == shipped
    assert MeasurementStore(host_profile).get("k-again").min_ms == T.min_ms
    written_to = MeasurementStore(host_profile).write_shipped()
    written = [json.loads(line) for line in gzip.decompress(written_to.read_bytes()).splitlines()]
    # this host's records replaced by the store's, the other host's kept for that host
    assert {(r["key"], r["min_ms"]) for r in written} == {("k-here", T.min_ms), ("k-again", T.min_ms),
                                                          ("k-other", T.min_ms)}
    assert {r["host"] for r in written if r["key"] == "k-other"} == {other_host["host"]}
    monkeypatch.setenv("AUTOMC_SHIPPED_MEASUREMENTS", "0")
    assert "k-here" not in MeasurementStore(host_profile)
    assert "k-here" not in MeasurementStore(host_profile, root=cache / "measurements")  # explicit root: no shipped


def test_the_shipped_measurements_are_small_and_name_their_host():
    """What is committed under hw_profiles/measurements/: < 5 MB a file, every record naming the
    device it was measured on (a file may hold several devices', each read only by its own)."""
    from automc._paths import SHIPPED_MEASUREMENTS_DIR

    shipped = sorted(SHIPPED_MEASUREMENTS_DIR.glob("*.jsonl.gz"))
    assert [p.name for p in shipped] == ["x86-vnni.jsonl.gz"]  # what README says ships
    for path in shipped:
        assert path.stat().st_size < 5e6, path
        hosts = {json.loads(line)["host"] for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()}
        assert hosts and all(hosts), (path, hosts)


def test_a_key_timed_again_keeps_the_fastest_of_its_passes(tmp_path, host_profile):
    """calibrate --retime: a second pass over a stored key merges into it (this host's slow
    phases last minutes, so the fastest of passes minutes apart is what counts); reopening
    reads the merged record, and the spec of the first pass is kept."""
    store = MeasurementStore(host_profile, root=tmp_path)
    store.add("k1", T, trials=4, spec={"op": "dense"})
    slower = Timing(median_ms=1.9, min_ms=1.8, max_ms=2.2, repeats=5)
    faster = Timing(median_ms=1.3, min_ms=1.2, max_ms=1.6, repeats=5)
    assert store.add("k1", slower, trials=4).latency_ms == 1.4  # a slow phase does not replace it
    rec = store.add("k1", faster, trials=4)
    assert (rec.latency_ms, rec.max_ms, rec.repeats, rec.passes) == (1.2, 2.2, 15, 3)
    assert rec.median_ms == pytest.approx((1.5 + 1.9 + 1.3) / 3) and rec.spec == {"op": "dense"}
    again = MeasurementStore(host_profile, root=tmp_path)
    assert again.get("k1") == rec and len(again) == 1


def test_shipped_records_count_only_where_this_host_runs_them_at_their_speed(tmp_path, monkeypatch,
                                                                             quick_profile_path):
    """A developer's calibration of the reference probes, shipped: timed again on this host it
    holds (ratio near 1, kept, not timed a second time); the same records as a VM twice as fast
    would have shipped them are rejected after the check's window, and a store then leaves them
    out; records three times as slow as this host are rejected at once. Real builds, timed."""
    import automc.latency.store as store_mod
    from automc.latency.calibrate import calibrate_probes
    from automc.latency.shipped import REFERENCE_PROBES, TOLERANCE, WINDOW_S, check_shipped, describe

    profile = load_profile(str(quick_profile_path))
    monkeypatch.setattr(store_mod, "SHIPPED_MEASUREMENTS_DIR", tmp_path / "shipped")
    monkeypatch.setenv("AUTOMC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOMC_SHIPPED_MEASUREMENTS", "1")
    assert check_shipped(profile) is None  # nothing ships
    developers = MeasurementStore(profile, root=tmp_path / "developers")
    calibrate_probes(profile, n=REFERENCE_PROBES, store=developers)
    # and `--retime`, as every shipped calibration is: the fastest of passes, not one's phase. A
    # check that finds this host faster than the records (their passes all met slow phases) is
    # answered as a developer answers it: one more `--retime` pass, and the records shipped again
    for _ in range(3):
        calibrate_probes(profile, n=REFERENCE_PROBES, store=developers, retimed=set())
        developers.write_shipped()
        check = check_shipped(profile, again=True)
        if check.accepted or check.ratio > 1:
            break
    assert check.accepted and check.references == REFERENCE_PROBES and 0.9 <= check.ratio <= 1.1
    assert MeasurementStore(profile).n_shipped == len(developers)
    assert check_shipped(profile) == check  # one verdict per shipped file
    assert "used" in describe(check)

    faster = [dict(r.__dict__, min_ms=r.min_ms / 2, median_ms=r.median_ms / 2) for r in developers.records()]
    store_mod.shipped_path(profile).write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in faster).encode()))
    check = check_shipped(profile)  # another file: checked again
    # rejected, and on the side of a host slower than its records; the ratio itself (2 on a
    # steady host) moves with this host's phases: 1.48 was seen with a search running beside it
    assert not check.accepted and check.ratio > 1 + TOLERANCE
    assert "IGNORED" in describe(check)
    store = MeasurementStore(profile)
    assert store.n_shipped == 0 and len(store) == 0 and store.shipped_check == check

    # records three times as slow as this host: rejected at once, no window. Three, not two: the
    # x86-avx2 references are now µs-long packed kernels, whose first timing can run well over
    # their calibration of minutes before, on a host whose speed comes in phases
    slower = [dict(r.__dict__, min_ms=r.min_ms * 3, median_ms=r.median_ms * 3) for r in developers.records()]
    store_mod.shipped_path(profile).write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in slower).encode()))
    start = time.monotonic()
    check = check_shipped(profile)
    assert not check.accepted and check.ratio < 1 / (1 + TOLERANCE) and time.monotonic() - start < WINDOW_S / 2
