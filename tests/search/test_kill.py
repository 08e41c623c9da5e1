"""A search killed with SIGKILL mid-trial loses nothing: rerunning the same command keeps the
finished trials, fails the interrupted one and runs it again, and reaches the requested count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from automc.search.pareto import load_study, pareto_frame
from collections import Counter

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _search(run_dir: Path, n: int, jobs: int, calls: Path, hang_at: int, address: str,
            score_s: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "TOY_SCORE_S": str(score_s)}
    return subprocess.Popen([sys.executable, str(HERE / "search_to_kill.py"), str(run_dir), str(n), str(jobs),
                             str(calls), str(hang_at), address], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead, only not yet reaped
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize("jobs", [1, 2])
def test_kill_9_mid_trial_then_the_same_command_finishes_the_search(tmp_path, jobs):
    kill_mid_trial_then_finish(tmp_path, jobs)


def kill_mid_trial_then_finish(tmp_path: Path, jobs: int, address: str = "") -> None:
    """SIGKILL a search (on Ray when ``address`` is given) while its 7th trial runs, check its
    workers died with it, rerun the same command and check the journal lost nothing."""
    run, calls = tmp_path / "run", tmp_path / "calls"
    proc = _search(run, 16, jobs, calls, hang_at=7, address=address)
    hung = Path(f"{calls}.hung")
    deadline = time.monotonic() + 120
    while not hung.exists():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the search never reached the hanging trial"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    worker = int(hung.read_text())
    deadline = time.monotonic() + 30
    while _alive(worker) and time.monotonic() < deadline:  # workers die with their driver
        time.sleep(0.05)
    assert not _alive(worker)

    before = load_study(run).trials
    running = [t for t in before if t.state == TrialState.RUNNING]
    done_before = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    assert running and len(done_before) >= 6 - jobs

    again = _search(run, 16, jobs, calls, hang_at=0, address=address)
    assert again.wait(timeout=120) == 0, again.stdout.read().decode()
    trials = load_study(run).trials
    interrupted = [t for t in trials if t.user_attrs.get("error", "").startswith("Interrupted")]
    assert {t.number for t in interrupted} == {t.number for t in running}
    assert all(t.state == TrialState.FAIL for t in interrupted)
    counted = [t for t in trials if t not in interrupted]
    assert len(counted) == 16 and all(t.state == TrialState.COMPLETE for t in counted)
    assert {t.number: t.values for t in trials if t.number in done_before} == done_before  # kept as they were
    # run again with the same choices (a baseline is queued again by name); a trial killed
    # between ask and its first choice has none to repeat, and a fresh trial takes its place;
    # one killed between two choices keeps those it had
    for t in (t for t in interrupted if t.params):
        retry = [r for r in counted if r.user_attrs.get("retry_of") == t.number
                 or ("baseline" in t.user_attrs and r.user_attrs.get("baseline") == t.user_attrs["baseline"])]
        assert len(retry) == 1 and retry[0].params.items() >= t.params.items()
    assert len({t.number for t in trials}) == len(trials)
    front = json.loads((run / "pareto.json").read_text())
    assert [r["trial"] for r in front] == list(pareto_frame(load_study(run))["trial"])


def test_two_searches_on_one_run_dir_run_every_trial_once(tmp_path):
    """Two shells on one run directory, the first with 2 workers: the second joins the first's
    study, and together they reach the requested count with no trial run twice or lost. (Alone,
    the first would take ~7 s of scoring: the second, started ~2 s in, has trials left to run.)"""
    run, calls = tmp_path / "run", tmp_path / "calls"
    first = _search(run, 30, 2, calls, hang_at=0, address="", score_s=0.5)
    deadline = time.monotonic() + 120
    while not calls.exists() or len(calls.read_text().splitlines()) < 3:  # the first is scoring
        assert first.poll() is None, first.stdout.read().decode()
        assert time.monotonic() < deadline, "the first search never started scoring"
        time.sleep(0.05)
    second = _search(run, 30, 1, calls, hang_at=0, address="", score_s=0.5)
    assert second.wait(timeout=120) == 0, second.stdout.read().decode()
    assert first.wait(timeout=120) == 0, first.stdout.read().decode()
    trials = load_study(run).trials
    assert len(trials) == 30 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == 30
    for attr in ("baseline", "seed"):  # queued once, by the first, and each run once
        names = [t.user_attrs[attr] for t in trials if attr in t.user_attrs]
        assert len(names) == len(set(names)) > 0
    scored_by = Counter(calls.read_text().split())
    repeats = sum("duplicate_of" in t.user_attrs for t in trials)  # scores reused, not recomputed
    assert sum(scored_by.values()) == 30 - repeats
    assert scored_by[str(second.pid)] > 0 and len(scored_by) == 3  # the first's two workers, the second
    front = json.loads((run / "pareto.json").read_text())
    assert [r["trial"] for r in front] == list(pareto_frame(load_study(run))["trial"])
