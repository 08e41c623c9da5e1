"""Search backends with real worker processes: forked local workers on the toy space, the
registry's one-line refusals. (Ray clusters: tests/search/test_ray_cluster.py.)"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from optuna.trial import TrialState

from automc.errors import UserInputError
from automc.search.backends import BACKENDS, make_backend
from automc.search.fidelity import Promotion
from automc.search.pareto import load_study
from automc.search.driver import SearchSettings, run_search
from automc.types import Candidate

from search_toys import check_promotions, recovered, toy_score


def quiet(n: int, sampler: str = "nsga2") -> SearchSettings:
    return SearchSettings(n_trials=n, sampler=sampler, seed=1, progress=False)


def test_local_jobs_2_runs_every_trial_once_in_two_processes(space, tmp_path):
    backend = make_backend("local", jobs=2)
    study = run_search(space, toy_score, tmp_path, quiet(20), backend=backend)
    trials = load_study(tmp_path).trials
    assert len(trials) == 20 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.number for t in trials}) == 20
    # every candidate scored on a worker, once: one proposed again reuses its first scores
    assert all(("worker" in t.user_attrs) != ("duplicate_of" in t.user_attrs) for t in trials)
    pids = Counter(t.user_attrs["worker"]["pid"] for t in trials if "worker" in t.user_attrs)
    assert len(pids) == 2 and os.getpid() not in pids
    # baselines and single changes ran exactly once each
    baselines = [t.user_attrs["baseline"] for t in trials if "baseline" in t.user_attrs]
    assert len(baselines) == len(set(baselines)) >= 3
    assert len(study.trials) == 20


def test_a_parallel_search_resumes_in_process_and_back(space, tmp_path):
    run_search(space, toy_score, tmp_path, quiet(8), backend=make_backend("local", jobs=2))
    run_search(space, toy_score, tmp_path, quiet(12))
    study = run_search(space, toy_score, tmp_path, quiet(16), backend=make_backend("local", jobs=2))
    assert len(study.trials) == 16 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sum(t.user_attrs.get("baseline") == "fp32" for t in study.trials) == 1


def test_promotions_run_on_the_workers_and_keep_both_fidelities(space, tmp_path):
    driver = os.getpid()

    def on_a_worker(candidate: Candidate) -> float:
        if os.getpid() == driver:
            raise AssertionError("promoted in the driver, not on a worker")
        return recovered(candidate)

    run_search(space, toy_score, tmp_path, quiet(20, "random"), Promotion(on_a_worker, low="eval", high="finetune"),
               backend=make_backend("local", jobs=2))
    check_promotions(load_study(tmp_path).trials, 20)


def test_a_failing_promotion_on_a_worker_fails_only_its_trial(space, tmp_path):
    def flaky(candidate: Candidate) -> float:
        return float("nan") if candidate.choice("a").w_bits == 8 else recovered(candidate)

    study = run_search(space, toy_score, tmp_path, quiet(12, "random"), Promotion(flaky, low="eval", high="finetune"),
                       backend=make_backend("local", jobs=2))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("not an accuracy" in t.user_attrs["error"] for t in failed)
    assert len(study.trials) == 12 and any(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_failing_candidate_on_a_worker_is_failed_with_its_reason(space, tmp_path):
    def flaky(candidate):
        if candidate.choice("b").prune == 0.5:
            raise RuntimeError("kernel did not build")
        return toy_score(candidate)

    study = run_search(space, flaky, tmp_path, quiet(16, "random"), backend=make_backend("local", jobs=2))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all(t.user_attrs["error"] == "RuntimeError: kernel did not build" for t in failed)
    assert len(study.trials) == 16


def test_a_worker_that_dies_fails_its_trial_and_the_search_goes_on(space, tmp_path):
    def deadly(candidate):
        if candidate.choice("a").prune == 0.5 and candidate.choice("b").prune == 0.5:
            os._exit(3)  # a crash no exception handler sees (segfault, OOM kill)
        return toy_score(candidate)

    study = run_search(space, deadly, tmp_path, quiet(12), backend=make_backend("local", jobs=2))
    assert len(study.trials) == 12 and all(t.state.is_finished() for t in study.trials)
    died = [t for t in study.trials if t.state == TrialState.FAIL]
    assert died and all(t.user_attrs["error"].startswith("WorkerDied") for t in died)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("name, jobs, address, message", [
    ("slurm", None, None, "--backend: unknown backend 'slurm'; choose one of local, ray"),
    ("local", 0, None, "--jobs: 0 trials at a time"),
    ("ray", -1, None, "--jobs: -1 trials at a time"),
    ("local", 2, "auto", "--address auto: only --backend ray"),
])
def test_bad_backend_options_are_refused(name, jobs, address, message):
    with pytest.raises(UserInputError, match=message.replace("(", r"\(")):
        make_backend(name, jobs, address)
    assert set(BACKENDS) == {"local", "ray"}


@pytest.mark.parametrize("options, message", [
    (["--jobs", "0"], "--jobs: 0 trials at a time cannot run anything; give 1 or more"),
    (["--backend", "slurm"], "--backend: unknown backend 'slurm'; choose one of local, ray"),
    (["--address", "auto"], "--address auto: only --backend ray connects to a cluster"),
])
def test_bad_backend_options_on_the_command_line_are_one_line_and_exit_2(tmp_path, options, message):
    from typer.testing import CliRunner

    from automc.cli import app

    res = CliRunner().invoke(app, ["search", "--trials", "4", "--run-dir", str(tmp_path / "run"), *options])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    ({"backend": "ray"}, "--backend ray: the model lives in this process only"),
])
def test_api_refuses_what_workers_cannot_do_before_anything_is_written(tmp_path, options, message):
    import torch

    import automc

    with pytest.raises(UserInputError, match=message):
        automc.search(torch.nn.Linear(2, 2), torch.zeros(1, 2), lambda m: 0.5, run_dir=tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


def test_a_cli_search_with_two_workers_promotes_on_them(quick_profile_path, tmp_path):
    from test_ray_cluster import automc_search

    from automc.api import RunScorer
    from automc.run_dir import RunInfo

    run = tmp_path / "run"
    res = automc_search(run, quick_profile_path, 3, "--jobs", "2", "--promote", "finetune")
    assert res.returncode == 0, res.stderr[-3000:]
    trials = [t for t in load_study(run).trials if t.state != TrialState.WAITING]  # baselines left queued
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    promoted = [t for t in trials if t.user_attrs["fidelity"] == "finetune"]
    assert promoted and all("worker" in t.user_attrs for t in trials)  # scored on the workers, not the driver
    # what a Ray actor builds from the run's record holds the promoted proxy too, and agrees
    # (up to the float order of another thread count) with what the forked workers scored
    scorers = RunScorer(RunInfo.read(run), str(run))()
    first = promoted[0]
    accuracy = scorers.promote(Candidate.from_json(first.user_attrs["candidate"]))
    assert accuracy == pytest.approx(first.user_attrs["accuracy_promoted"], abs=0.03)
