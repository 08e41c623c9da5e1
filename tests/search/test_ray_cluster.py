"""The ray backend on real Ray clusters started here (one node, then two), driven through the
CLI as a user would: trials run on the cluster's actors, the journal stays the driver's, and a
run moves between Ray and in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from automc.search.backends import make_backend
from automc.search.fidelity import Promotion
from automc.search.pareto import load_study
from automc.search.driver import SearchSettings, run_search
from automc.types import Candidate

from ray_nodes import NO_TOKEN, RayNodes, free_port
from search_toys import (check_promotions, deadly_scorer, flaky_scorer, promoting_scorer, recovered, toy_score,
                         toy_scorer)

REPO = Path(__file__).resolve().parents[2]


def automc_search(run_dir: Path, profile: Path, trials: int, *options: str,
                  timeout_s: float = 600) -> subprocess.CompletedProcess:
    # a 1 s calibration budget: these tests are about where trials run, not about latencies
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "automc.cli", "search", "--profile", str(profile), "--trials",
                           str(trials), "--budget", "1", "--run-dir", str(run_dir), *options],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout_s)


@pytest.fixture
def one_node():
    nodes = RayNodes()
    try:
        nodes.start_head(num_cpus=2)
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture(scope="module")
def two_nodes():
    nodes = RayNodes()
    try:
        nodes.start_head(num_cpus=1)
        nodes.add_worker(num_cpus=1)
        nodes.wait_for(nodes=2)
        yield nodes
    finally:
        nodes.stop()


def _on_ray(space, run_dir: Path, n: int, address: str, rebuild, score=toy_score, jobs: int = 2,
            promotion: Promotion | None = None, sampler: str = "nsga2"):
    backend = make_backend("ray", jobs, address)
    backend.connect()
    try:
        return run_search(space, score, run_dir, SearchSettings(n_trials=n, sampler=sampler, seed=1, progress=False),
                          promotion, backend=backend, rebuild=rebuild)
    finally:
        backend.close()


def test_toy_trials_run_on_both_nodes_once_each(two_nodes, space, tmp_path):
    study = _on_ray(space, tmp_path, 12, two_nodes.address, toy_scorer)
    trials = study.trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    # a candidate proposed again reuses its first scores: scored nowhere
    scored = [t for t in trials if "duplicate_of" not in t.user_attrs]
    nodes = Counter(t.user_attrs["worker"]["node"] for t in scored)
    assert len(nodes) == 2, nodes
    assert all(t.user_attrs["worker"]["pid"] != os.getpid() for t in scored)
    again = run_search(space, toy_score, tmp_path, SearchSettings(n_trials=14, seed=1, progress=False))
    assert len(again.trials) == 14 and "worker" not in again.trials[-1].user_attrs  # resumed in-process


def test_a_12_trial_search_on_a_one_node_cluster(one_node, space, tmp_path):
    study = _on_ray(space, tmp_path, 12, one_node.address, toy_scorer)
    assert len(study.trials) == 12 and all(t.state == TrialState.COMPLETE for t in study.trials)
    workers = _workers(tmp_path)
    assert len(workers) + _repeats(tmp_path) == 12 and len({w["node"] for w in workers}) == 1
    assert len({w["pid"] for w in workers}) == 2 and os.getpid() not in {w["pid"] for w in workers}  # 2 actors


def test_address_auto_joins_the_cluster_ray_address_names(two_nodes, space, tmp_path, monkeypatch):
    # `--address auto` is Ray's own lookup: RAY_ADDRESS, else the cluster `ray start` left here
    monkeypatch.setenv("RAY_ADDRESS", two_nodes.address)
    study = _on_ray(space, tmp_path, 6, "auto", toy_scorer)
    assert len(study.trials) == 6 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({w["node"] for w in _workers(tmp_path)}) == 2  # that cluster's two nodes


def test_promotions_run_on_the_actors(two_nodes, space, tmp_path):
    def not_here(candidate) -> float:
        raise AssertionError("promoted in the driver, not on an actor")

    # the driver decides what to promote; the actors score it with the scorers they built
    study = _on_ray(space, tmp_path, 16, two_nodes.address, promoting_scorer, sampler="random",
                    promotion=Promotion(not_here, low="eval", high="finetune"))
    check_promotions(study.trials, 16)
    assert all(t.user_attrs["accuracy_promoted"] == recovered(Candidate.from_json(t.user_attrs["candidate"]))
               for t in study.trials if "accuracy_promoted" in t.user_attrs)


def test_a_failing_candidate_on_ray_is_failed_with_its_reason(two_nodes, space, tmp_path):
    study = _on_ray(space, tmp_path, 12, two_nodes.address, flaky_scorer)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["error"] == "RuntimeError: kernel did not build" for t in failed)
    assert len(study.trials) == 12 and any(t.state == TrialState.COMPLETE for t in study.trials)


def test_an_actor_that_dies_fails_its_trial_and_the_search_goes_on(two_nodes, space, tmp_path):
    study = _on_ray(space, tmp_path, 12, two_nodes.address, deadly_scorer)
    assert len(study.trials) == 12 and all(t.state.is_finished() for t in study.trials)
    died = [t for t in study.trials if t.state == TrialState.FAIL]
    assert died and all(t.user_attrs["error"].startswith("WorkerDied") for t in died), \
        [t.user_attrs.get("error") for t in died]
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_kill_9_of_a_search_on_ray_then_the_same_command_finishes_it(two_nodes, tmp_path):
    from test_kill import kill_mid_trial_then_finish

    kill_mid_trial_then_finish(tmp_path, 2, two_nodes.address)


def _workers(run_dir: Path) -> list[dict]:
    """Where each trial scored on a worker ran (trials scored in-process, or reusing an earlier
    trial's scores, have none)."""
    return [t.user_attrs["worker"] for t in load_study(run_dir).trials if "worker" in t.user_attrs]


def _repeats(run_dir: Path) -> int:
    return sum("duplicate_of" in t.user_attrs for t in load_study(run_dir).trials)


@pytest.mark.slow  # two CLI searches of demo-cnn: about two minutes on 2 cores
def test_a_search_started_here_continues_on_one_ray_node(one_node, quick_profile_path, tmp_path):
    run = tmp_path / "run"
    local = automc_search(run, quick_profile_path, 4)
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = automc_search(run, quick_profile_path, 12, "--backend", "ray", "--address", one_node.address)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    trials = load_study(run).trials
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials), \
        [(t.number, t.state.name, t.user_attrs.get("error")) for t in trials]
    workers = _workers(run)
    assert len(workers) + _repeats(run) == 8  # the 4 in-process trials have no worker
    assert len({w["node"] for w in workers}) == 1 and len({w["pid"] for w in workers}) == 2
    assert sum(t.user_attrs.get("baseline") == "fp32" for t in trials) == 1


@pytest.mark.slow  # two CLI searches of demo-cnn: about two minutes on 2 cores
def test_trials_run_on_both_nodes_and_the_run_resumes_in_process(two_nodes, quick_profile_path, tmp_path):
    run = tmp_path / "run"
    on_ray = automc_search(run, quick_profile_path, 8, "--backend", "ray", "--address", two_nodes.address,
                           "--jobs", "2")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    workers = _workers(run)
    assert len(workers) + _repeats(run) == 8
    assert len({w["node"] for w in workers}) == 2, Counter(w["node"] for w in workers)
    local = automc_search(run, quick_profile_path, 10)
    assert local.returncode == 0, local.stderr[-3000:]
    trials = load_study(run).trials
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)


def test_more_jobs_than_the_cluster_has_cpus_is_refused(two_nodes, quick_profile_path, tmp_path):
    res = automc_search(tmp_path / "run", quick_profile_path, 4, "--backend", "ray", "--address", two_nodes.address,
                        "--jobs", "3")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "has 2 CPUs" in res.stderr and "3 trials" in res.stderr and "ray start --address" in res.stderr
    assert not (tmp_path / "run").exists()


def test_an_unreachable_address_is_refused_in_seconds(quick_profile_path, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    res = automc_search(tmp_path / "run", quick_profile_path, 4, "--backend", "ray", "--address", address)
    assert res.returncode == 2, res.stderr[-3000:]
    assert time.monotonic() - start < 30  # the interpreter and imports, then a 3 s connect at most
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and address in lines[0] and "ray start --head" in lines[0], res.stderr
    assert not (tmp_path / "run").exists()
