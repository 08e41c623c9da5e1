"""A calibration killed with SIGKILL mid-way loses nothing: the same command run again reuses
every measurement stored before the kill and never times it again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from automc._paths import REPO_ROOT, cache_dir

KILL_AFTER_WHOLES = 2  # whole models stored before the kill
TIMEOUT_S = 600


def _calibrate(profile_path: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "AUTOMC_CACHE": str(cache), "AUTOMC_SHIPPED_MEASUREMENTS": "0",
           "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "automc.cli", "calibrate", "--profile", str(profile_path), "--model", "demo-cnn",
           "--probes", "0", "--random", "0", "--budget", "10m"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _lines(store: Path) -> list[str]:
    return store.read_text().splitlines() if store.exists() else []


def _records(lines: list[str]) -> dict[str, dict]:
    """The whole lines' records by key (the last wins); a line the kill tore is no record."""
    out = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        out[rec["key"]] = rec
    return out


def _wholes(lines: list[str]) -> int:
    return sum(rec.get("kernels") is not None for rec in _records(lines).values())


def test_kill_9_mid_calibration_then_the_same_command_reuses_every_stored_measurement(
        tmp_path, demo, quick_profile, quick_profile_path):
    cache = tmp_path / "cache"
    # the trained demo weights from the session's cache: this test is about measurements
    shutil.copytree(cache_dir() / "models", cache / "models")
    store = cache / "measurements" / f"{quick_profile.name}.jsonl"

    proc = _calibrate(quick_profile_path, cache)
    deadline = time.monotonic() + TIMEOUT_S
    while _wholes(_lines(store)) < KILL_AFTER_WHOLES:
        assert proc.poll() is None, f"calibration ended before the kill:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "no whole model stored in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _lines(store)
    stored = _records(before)
    assert _wholes(before) >= KILL_AFTER_WHOLES

    again = _calibrate(quick_profile_path, cache)
    out, _ = again.communicate(timeout=TIMEOUT_S)
    assert again.returncode == 0, out
    after = _lines(store)
    assert after[:len(before)] == before  # append-only: nothing rewritten, a torn line left as it was
    for line in after[len(before):]:
        rec = json.loads(line)  # the rerun writes whole lines only, past any torn one
        old = stored.get(rec["key"])
        if old is not None:  # met again: at most re-tagged, never timed again
            assert (rec["min_ms"], rec["median_ms"], rec["passes"]) == (old["min_ms"], old["median_ms"],
                                                                        old["passes"]), rec["key"]
    assert "candidate models measured" in out
