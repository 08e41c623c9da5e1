import json

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from automc.errors import UserInputError
from automc.search.pareto import STUDY_NAME, journal_storage, load_study, pareto_frame
from automc.search.driver import SearchSettings, run_search
from automc.search.seeds import baseline_params
from automc.search.samplers import SAMPLERS
from automc.search.space import LayerOptions, ResolvedSpace

from search_toys import make_space, toy_score


def quiet(n: int, sampler: str = "nsga2") -> SearchSettings:
    return SearchSettings(n_trials=n, sampler=sampler, seed=1, progress=False)


def test_baselines_run_first_with_their_labels(space, tmp_path):
    study = run_search(space, toy_score, tmp_path, quiet(6))
    first = study.trials[:3]
    assert [t.user_attrs.get("baseline") for t in first] == ["fp32", "int8", "prune"]
    assert all(t.state == TrialState.COMPLETE for t in first)
    assert first[0].params == space.uniform()
    assert all(t.params["a.bits"] == "8/8" and t.params["b.bits"] == "8/8" for t in [first[1]])
    assert first[2].params["a.prune"] == 0.5 and first[2].params["b.prune"] == 0.5
    n = len(baseline_params(space))
    assert [t.user_attrs.get("baseline") for t in study.trials[:n]] == list(baseline_params(space))
    assert all("baseline" not in t.user_attrs for t in study.trials[n:])


def test_duplicate_baselines_are_skipped():
    fp32_only = ResolvedSpace("t", (LayerOptions("a", ((32, 32), (4, 8)), (0.0,), (1.0,)),), {}, None, None)
    # int8, prune and lowrank are all fp32 in this space; 4-bit weights are not
    assert list(baseline_params(fp32_only)) == ["fp32", "w4a8"]


def test_results_files_have_the_promised_columns(space, tmp_path):
    run_search(space, toy_score, tmp_path, quiet(8))
    trials = pd.read_csv(tmp_path / "trials.csv")
    for col in ("number", "state", "accuracy", "latency_ms", "size_bytes", "baseline", "latency_source",
                "error", "a.bits", "a.prune", "b.bits", "b.prune", "c.bits", "c.rank", "blk.cell"):
        assert col in trials.columns, col
    assert len(trials) == 8
    assert set(trials["baseline"].dropna()) == set(baseline_params(space))
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert front and set(front[0]) >= {"trial", "accuracy", "latency_ms", "size_bytes", "baseline",
                                       "latency_source", "candidate", "summary"}
    assert set(front[0]["candidate"]["layers"]) == {"a", "b", "c"}
    assert front[0]["candidate"]["cells"]["blk"] in ("keep", "skip")
    assert [r["latency_ms"] for r in front] == sorted(r["latency_ms"] for r in front)


def test_trial_attrs_hold_candidate_source_and_extras(space, tmp_path):
    study = run_search(space, toy_score, tmp_path, quiet(4))
    t = study.trials[1]
    assert json.loads(t.user_attrs["candidate"])["layers"]["a"]["w_bits"] == 8
    assert t.user_attrs["latency_source"] == "calibrated"
    assert t.user_attrs["macs"] == int(t.values[1] * 1e6)


def test_failing_score_is_recorded_and_the_search_goes_on(space, tmp_path):
    def flaky(candidate):
        if candidate.choice("b").prune == 0.5:
            raise RuntimeError("kernel did not build")
        return toy_score(candidate)

    study = run_search(space, flaky, tmp_path, quiet(16, "random"))
    assert len(study.trials) == 16
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "the prune baseline at least must fail"
    assert all(t.user_attrs["error"] == "RuntimeError: kernel did not build" for t in failed)
    assert all(t.params["b.prune"] == 0.5 for t in failed)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert (trials.loc[trials["state"] == "FAIL", "error"] == "RuntimeError: kernel did not build").all()


def test_non_finite_score_fails_with_a_reason(space, tmp_path):
    study = run_search(space, lambda c: toy_score(c).__class__(float("nan"), 1.0, 1), tmp_path, quiet(2))
    ran = [t for t in study.trials if t.state != TrialState.WAITING]  # the prune baseline is still queued
    assert len(ran) == 2
    assert all(t.state == TrialState.FAIL and "non-finite" in t.user_attrs["error"] for t in ran)


def test_resume_runs_only_the_missing_trials(space, tmp_path):
    run_search(space, toy_score, tmp_path, quiet(10))
    study = run_search(space, toy_score, tmp_path, quiet(15))
    assert len(study.trials) == 15
    assert sum(t.user_attrs.get("baseline") == "fp32" for t in study.trials) == 1
    assert len(load_study(tmp_path).trials) == 15
    again = run_search(space, toy_score, tmp_path, quiet(15))
    assert len(again.trials) == 15


def test_resume_closes_out_a_trial_killed_mid_run(space, tmp_path):
    run_search(space, toy_score, tmp_path, quiet(4))
    ghost = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path)).ask()  # never told
    study = run_search(space, toy_score, tmp_path, quiet(7))
    t = study.trials[ghost.number]
    assert t.state == TrialState.FAIL and t.user_attrs["error"].startswith("Interrupted")
    # the interrupted trial does not count: 7 others ran, all finished
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    assert sum(t.user_attrs.get("error", "").startswith("Interrupted") for t in study.trials) == 1


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_front_is_exactly_the_non_dominated_trials(space, tmp_path, sampler):
    study = run_search(space, toy_score, tmp_path, quiet(20, sampler))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]

    def dominates(p, q):
        at_least = p.values[0] >= q.values[0] and p.values[1] <= q.values[1] and p.values[2] <= q.values[2]
        return at_least and tuple(p.values) != tuple(q.values)

    brute = {t.user_attrs["candidate"] for t in done if not any(dominates(o, t) for o in done)}
    front = pareto_frame(study)
    assert {json.dumps(c, sort_keys=True) for c in front["candidate"]} == brute
    assert front["trial"].is_unique


def test_budget_keeps_over_budget_trials_off_the_front(tmp_path):
    space = make_space(max_latency_ms=2.0)
    study = run_search(space, toy_score, tmp_path, quiet(20))
    fp32 = study.trials[0]
    assert fp32.values[1] == pytest.approx(3.0)
    assert fp32.user_attrs["constraint"]["latency_ms"] == pytest.approx(0.5)  # 50% over budget
    front = pareto_frame(study)
    assert not front.empty and (front["latency_ms"] <= 2.0).all()
    assert 0 not in set(front["trial"])
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert not trials.loc[trials["number"] == 0, "feasible"].item()


def test_unknown_sampler_is_refused(space, tmp_path):
    with pytest.raises(UserInputError, match="--sampler: unknown sampler 'cmaes'.*nsga3"):
        run_search(space, toy_score, tmp_path / "run", quiet(1, "cmaes"))
    assert not (tmp_path / "run").exists()


def test_progress_bar_runs(space, tmp_path, capsys):
    run_search(space, toy_score, tmp_path, SearchSettings(n_trials=4, progress=True))
    assert "4/4" in capsys.readouterr().out


def test_accuracy_floor_keeps_points_below_off_the_front(tmp_path):
    from dataclasses import replace

    space = replace(make_space(), min_accuracy=0.85)
    study = run_search(space, toy_score, tmp_path, quiet(24, "random"))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    below = [t for t in done if t.values[0] < 0.85]
    assert below, "the toy's compressed candidates fall under the floor"
    assert all(t.user_attrs["constraint"]["accuracy"] == pytest.approx(0.85 - t.values[0]) for t in below)
    front = pareto_frame(study)
    assert not front.empty and (front["accuracy"] >= 0.85).all()
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert not trials.loc[trials["number"].isin([t.number for t in below]), "feasible"].any()


def test_an_evaluate_without_an_accuracy_fails_that_trial_and_the_search_goes_on(space, tmp_path):
    from automc.accuracy import checked_accuracy
    from automc.types import Evaluation

    def score(candidate):
        ev = toy_score(candidate)
        bad = float("nan") if candidate.choice("a").w_bits == 8 else 1.7 if candidate.choice("a").prune else ev.accuracy
        return Evaluation(checked_accuracy(bad), ev.latency_ms, ev.size_bytes)

    study = run_search(space, score, tmp_path, quiet(16, "random"))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("not an accuracy" in t.user_attrs["error"] for t in failed)
    assert any("nan" in t.user_attrs["error"] for t in failed)
    assert any(t.state == TrialState.COMPLETE for t in study.trials) and len(study.trials) == 16


def test_every_entry_point_defaults_to_the_one_default_sampler():
    import inspect

    import automc.api
    import automc.cli
    from automc.search.samplers import DEFAULT_SAMPLER

    assert DEFAULT_SAMPLER in SAMPLERS
    assert SearchSettings(n_trials=1).sampler == DEFAULT_SAMPLER
    assert inspect.signature(automc.api.search).parameters["sampler"].default == DEFAULT_SAMPLER
    # the CLI names it literally (its imports are lazy, for a fast --help)
    assert inspect.signature(automc.cli.search).parameters["sampler"].default.default == DEFAULT_SAMPLER


def test_the_api_and_the_cli_default_to_the_one_default_proxy():
    import inspect

    import automc.api
    import automc.cli
    from automc.accuracy import DEFAULT_PROXY, PROXIES

    assert DEFAULT_PROXY in PROXIES
    assert inspect.signature(automc.api.search).parameters["proxy"].default == DEFAULT_PROXY
    assert inspect.signature(automc.cli.search).parameters["proxy"].default.default == DEFAULT_PROXY
