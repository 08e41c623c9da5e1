import optuna
import pytest
from optuna.trial import TrialState

from automc.search.driver import SearchSettings, run_search
from automc.search.seeds import baseline_params
from automc.search.pareto import DIRECTIONS, STUDY_NAME, journal_storage
from automc.search.seeds import Fp32Scores, SingleChange, combination_params, single_change_params

from search_toys import toy_score


def quiet(n: int) -> SearchSettings:
    return SearchSettings(n_trials=n, seed=1, progress=False)


def test_single_changes_change_one_choice_each(space):
    singles = single_change_params(space, max_changes=100)
    base = space.uniform()
    # a: 8/8, prune .5; b: 8/8, 4/8, prune .25, .5; c: 8/8, rank .5; blk: skip
    assert len(singles) == 9
    for name, params in singles.items():
        changed = {k: v for k, v in params.items() if v != base[k]}
        assert len(changed) == 1 and name == "single:{}={}".format(*next(iter(changed.items())))


def test_too_many_single_changes_fall_back_to_the_most_aggressive_then_to_none(space):
    aggressive = single_change_params(space, max_changes=8)
    assert len(aggressive) == 7
    assert "single:b.bits=4/8" in aggressive and "single:b.prune=0.5" in aggressive
    assert "single:b.bits=8/8" not in aggressive and "single:b.prune=0.25" not in aggressive
    assert single_change_params(space, max_changes=6) == {}


def test_combinations_take_the_cheapest_savings_within_each_budget(space):
    ref = Fp32Scores(accuracy=0.90, latency_ms=3.0, size_bytes=12000)
    singles = [
        SingleChange("a.prune", 0.5, 0.90, 2.5, 10000),    # free: always taken
        SingleChange("b.prune", 0.25, 0.895, 2.0, 11000),  # 0.5 pt for 1 ms
        SingleChange("b.prune", 0.5, 0.88, 1.5, 10500),    # 2 pt for 1.5 ms
        SingleChange("c.bits", "8/8", 0.899, 3.2, 9000),    # slower: never for latency, good for size
    ]
    combos = combination_params(space, ref, singles)
    lat0, lat05 = combos["latency≤0pt"], combos["latency≤0.5pt"]
    assert lat0 == {**space.uniform(), "a.prune": 0.5}
    assert lat05 == {**space.uniform(), "a.prune": 0.5, "b.prune": 0.25}
    assert "latency≤1pt" not in combos  # the same as ≤0.5pt: b.prune is taken once
    # with 2 points, b's stronger pruning replaces the weaker one: 0 + 2 pt fits
    assert combos["latency≤2pt"] == {**space.uniform(), "a.prune": 0.5, "b.prune": 0.5}
    assert combos["size≤0.5pt"]["c.bits"] == "8/8"
    assert all(v.get("c.bits", "32/32") == "32/32" for k, v in combos.items() if k.startswith("latency"))


def test_search_tries_single_changes_then_combines_and_the_combination_holds_its_budget(space, tmp_path):
    study = run_search(space, toy_score, tmp_path, quiet(30))
    n_base = len(baseline_params(space))
    seeds = [t.user_attrs.get("seed", "") for t in study.trials]
    assert all(s.startswith("single:") for s in seeds[n_base:n_base + 9])
    combos = [t for t in study.trials if t.user_attrs.get("seed", "").startswith("combination:")]
    assert combos and min(t.number for t in combos) == n_base + 9
    fp32 = study.trials[0]
    # the toy's accuracy is additive, so a combination loses exactly its summed budgeted losses
    for t in combos:
        objective, budget_pt = t.user_attrs["seed"].removeprefix("combination:").removesuffix("pt").split("≤")
        assert fp32.values[0] - t.values[0] <= float(budget_pt) / 100 + 1e-9
        assert t.values[1 if objective == "latency" else 2] < fp32.values[1 if objective == "latency" else 2]
    assert "combination:latency≤2pt" in {t.user_attrs["seed"] for t in combos}  # b.prune 0.25: 1.5 pt
    assert len(study.trials) == 30


def test_a_search_killed_during_the_single_changes_resumes_them_once(space, tmp_path):
    calls = []

    def dies_at_the_eighth(candidate):
        calls.append(candidate)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return toy_score(candidate)

    with pytest.raises(KeyboardInterrupt):
        run_search(space, dies_at_the_eighth, tmp_path, quiet(30))
    study = run_search(space, toy_score, tmp_path, quiet(30))
    # the interrupted one is failed as such and run again: each single change ran once to the end
    interrupted = [t for t in study.trials if t.user_attrs.get("error", "").startswith("Interrupted")]
    assert len(interrupted) == 1 and interrupted[0].user_attrs["seed"].startswith("single:")
    counted = [t for t in study.trials if t not in interrupted]
    seeds = [t.user_attrs.get("seed") for t in counted if t.user_attrs.get("seed")]
    singles = [s for s in seeds if s.startswith("single:")]
    assert len(singles) == len(set(singles)) == 9
    assert any(s.startswith("combination:") for s in seeds)
    assert len(counted) == 30 and all(t.state == TrialState.COMPLETE for t in counted)


def test_a_journal_whose_single_changes_are_called_probes_resumes_without_queueing_them_again(space, tmp_path):
    """Journals written before the rename store a single change's [key, value] as "probe"."""
    study = optuna.create_study(storage=journal_storage(tmp_path), study_name=STUDY_NAME, directions=list(DIRECTIONS))
    for name, params in baseline_params(space).items():
        study.enqueue_trial(params, user_attrs={"baseline": name})
    base = space.uniform()
    for name, params in single_change_params(space, max_changes=100).items():
        key, value = next((k, v) for k, v in params.items() if v != base[k])
        study.enqueue_trial(params, user_attrs={"seed": name.replace("single:", "probe:"), "probe": [key, value]})
    study = run_search(space, toy_score, tmp_path, quiet(30))
    seeds = [t.user_attrs.get("seed", "") for t in study.trials]
    assert sum(s.startswith(("single:", "probe:")) for s in seeds) == 9
    assert any(s.startswith("combination:") for s in seeds)


def test_small_budgets_and_opt_out_skip_seeding(space, tmp_path):
    small = run_search(space, toy_score, tmp_path / "small", quiet(12))
    off = run_search(space, toy_score, tmp_path / "off", SearchSettings(n_trials=30, progress=False,
                                                                         sensitivity_seeds=False))
    for study in (small, off):
        assert not any("seed" in t.user_attrs for t in study.trials)
    assert sum(t.state == TrialState.COMPLETE for t in off.trials) == 30
