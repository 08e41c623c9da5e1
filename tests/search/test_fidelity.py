"""Multi-fidelity search: the cheap proxy for every trial, a second score for the promising ones."""

from __future__ import annotations

import io
import json

import pandas as pd
from optuna.trial import TrialState
from rich.console import Console

from automc.report import front_table, pareto_figure
from automc.search.fidelity import Promotion, cheap_point
from automc.search.pareto import pareto_frame, trials_frame
from automc.search.driver import SearchSettings, run_search
from automc.types import Candidate

from search_toys import recovered, toy_score


def _dominated(p, q) -> bool:
    """Is ``q`` dominated by ``p`` (accuracy ↑, latency ↓, size ↓)?"""
    return p[0] >= q[0] and p[1] <= q[1] and p[2] <= q[2] and p != q


def test_promotion_keeps_both_fidelities(space, tmp_path):
    study = run_search(space, toy_score, tmp_path, SearchSettings(n_trials=20, sampler="random", seed=2,
                                                                  progress=False),
                       Promotion(recovered, low="eval", high="finetune"))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    promoted = [t for t in done if t.user_attrs["fidelity"] == "finetune"]
    assert promoted and len(promoted) < len(done)
    for i, t in enumerate(done):
        cand = Candidate.from_json(t.user_attrs["candidate"])
        assert t.user_attrs["accuracy_proxy"] == toy_score(cand).accuracy
        # promoted exactly when no earlier trial's cheap point dominates this one's
        earlier = [cheap_point(o) for o in done[:i]]
        assert (t in promoted) == (not any(_dominated(p, cheap_point(t)) for p in earlier))
        if t in promoted:
            assert t.values[0] == t.user_attrs["accuracy_promoted"] == recovered(cand)
        else:
            assert t.values[0] == t.user_attrs["accuracy_proxy"] and "accuracy_promoted" not in t.user_attrs

    trials = pd.read_csv(tmp_path / "trials.csv")
    assert set(trials["fidelity"].dropna()) == {"eval", "finetune"}
    assert trials["accuracy_proxy"].notna().sum() == len(done)
    assert trials["accuracy_promoted"].notna().sum() == len(promoted)
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert all(row["fidelity"] in ("eval", "finetune") for row in front)

    frame = pareto_frame(study)
    console = Console(file=io.StringIO(), width=200)
    console.print(front_table(frame))
    text = console.file.getvalue()
    assert "accuracy from" in text and "finetune (proxy" in text
    fig = pareto_figure(trials_frame(study), frame)
    by_name = {t.name: t for t in fig.data}
    symbols = list(by_name["Pareto front"].marker.symbol)
    assert symbols == ["circle" if pd.notna(p) else "square" for p in frame["accuracy_promoted"]]
    assert "promoted" in fig.layout.title.text


def test_a_failing_promotion_fails_only_its_trial(space, tmp_path):
    def flaky(candidate: Candidate) -> float:
        return float("nan") if candidate.choice("a").w_bits == 8 else recovered(candidate)

    study = run_search(space, toy_score, tmp_path, SearchSettings(n_trials=12, sampler="random", progress=False),
                       Promotion(flaky, low="eval", high="finetune"))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("not an accuracy" in t.user_attrs["error"] for t in failed)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)


def test_without_promotion_the_fidelity_columns_stay_empty(space, tmp_path):
    run_search(space, toy_score, tmp_path, SearchSettings(n_trials=4, progress=False))
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert {"fidelity", "accuracy_proxy", "accuracy_promoted"} <= set(trials.columns)
    assert trials["fidelity"].isna().all()


def test_a_candidate_proposed_again_reuses_its_first_scores(space, tmp_path):
    calls: list[str] = []

    def counted(candidate: Candidate) -> float:
        calls.append(candidate.to_json())
        return recovered(candidate)

    # 60 random trials over this space's 288 candidates: some come up twice
    study = run_search(space, toy_score, tmp_path, SearchSettings(n_trials=60, sampler="random", seed=1,
                                                                  progress=False),
                       Promotion(counted, low="eval", high="finetune"))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    repeats = [t for t in done if "duplicate_of" in t.user_attrs]
    assert repeats, "the seed gives no repeated candidate; pick another"
    assert len(calls) == len(set(calls))  # each candidate recovered once at most
    for t in repeats:
        first = study.trials[t.user_attrs["duplicate_of"]]
        assert first.user_attrs["candidate"] == t.user_attrs["candidate"] and "duplicate_of" not in first.user_attrs
        assert t.values == first.values
        assert {k: t.user_attrs.get(k) for k in ("fidelity", "accuracy_proxy", "accuracy_promoted")} == \
               {k: first.user_attrs.get(k) for k in ("fidelity", "accuracy_proxy", "accuracy_promoted")}
