import pandas as pd

from automc.report import pareto_figure, write_pareto_html


def test_html_is_self_contained_and_names_the_baselines(calibrated, tmp_path):
    trials, front = calibrated
    path = write_pareto_html(pareto_figure(trials, front), tmp_path / "pareto.html")
    html = path.read_text()
    assert "plotly" in html
    assert "<script src=\"http" not in html  # plotly.js inlined: opens offline
    for name in ("fp32", "int8", "prune"):
        assert name in html


def test_figure_layers_trials_front_and_baselines(calibrated):
    trials, front = calibrated
    fig = pareto_figure(trials, front)
    by_name = {t.name: t for t in fig.data}
    assert len(by_name["all trials"].x) == trials["accuracy"].notna().sum()
    assert list(by_name["Pareto front"].x) == list(front["latency_ms"])
    baselines = set(trials["baseline"].dropna()) - {""}
    assert {"fp32", "int8", "prune"} <= baselines
    assert set(by_name["uniform baselines"].text) == baselines
    # hover carries the trial number and per-layer summary of each front point
    assert [row[1] for row in by_name["Pareto front"].customdata] == list(front["summary"])
    assert "UNCALIBRATED" not in fig.layout.title.text + fig.layout.xaxis.title.text


def test_uncalibrated_latency_is_labelled(uncalibrated):
    fig = pareto_figure(*uncalibrated)
    assert "UNCALIBRATED roofline estimate" in fig.layout.title.text
    assert "UNCALIBRATED roofline estimate" in fig.layout.xaxis.title.text


def test_empty_run_still_draws(tmp_path):
    empty = pd.DataFrame(columns=["number", "state", "accuracy", "latency_ms", "size_bytes", "baseline"])
    front = pd.DataFrame(columns=["trial", "accuracy", "latency_ms", "size_bytes", "summary"])
    assert write_pareto_html(pareto_figure(empty, front), tmp_path / "p.html").exists()


def test_points_under_the_accuracy_floor_are_drawn_apart_and_greyed(floored):
    trials, front = floored
    by_name = {t.name: t for t in pareto_figure(trials, front).data}
    infeasible = by_name["infeasible (under the accuracy floor or over a budget)"]
    under = trials[trials["feasible"].eq(False)]
    assert len(under) > 0 and (under["accuracy"] < 0.85).all()
    assert sorted(row[0] for row in infeasible.customdata) == sorted(under["number"])
    assert len(by_name["all trials"].x) + len(infeasible.x) == trials["accuracy"].notna().sum()
    assert "rgba(190,190,190" in infeasible.marker.color
    assert not front.empty and (front["accuracy"] >= 0.85).all()  # and so the front table has none
