import pandas as pd

from automc.report import pareto_figure, write_html


def test_html_shares_one_local_plotly_and_names_the_baselines(calibrated, tmp_path):
    import plotly

    trials, front = calibrated
    paths = [write_html(pareto_figure(trials, front), tmp_path / run / "pareto.html") for run in ("run1", "run2")]
    shared = tmp_path / f"plotly-{plotly.__version__}.min.js"
    assert shared.stat().st_size > 1e6  # one copy for every run beside it, loaded locally: opens offline
    for path in paths:
        html = path.read_text()
        assert f'src="../{shared.name}"' in html and "<script src=\"http" not in html
        assert len(html) < 0.1 * shared.stat().st_size
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
    assert write_html(pareto_figure(empty, front), tmp_path / "run" / "p.html").exists()


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
