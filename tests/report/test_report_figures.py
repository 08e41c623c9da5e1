"""The per-layer heatmap, the hypervolume history and the PNG pictures of a real (toy) search."""

from __future__ import annotations

import shutil

import optuna

from automc.report import hypervolume_figure, layers_figure, write_run_figures
from automc.search import pareto_frame, trials_frame
from automc.types import Candidate


def test_layers_heatmap_shows_every_front_points_choices(calibrated):
    _, front = calibrated
    fig = layers_figure(front)
    (heat,) = fig.data
    assert list(heat.y) == ["a", "b"] and list(heat.x) == [f"trial {int(t)}" for t in front["trial"]]
    for j, cand in enumerate(Candidate.from_dict(c) for c in front["candidate"]):
        for i, name in enumerate(heat.y):
            assert heat.z[i][j] == cand.choice(name).w_bits
            assert heat.text[i][j].startswith("fp32" if not cand.choice(name).quantized else
                                              f"{cand.choice(name).w_bits}/{cand.choice(name).a_bits}")


def test_hypervolume_history_never_falls_and_grows(toy_study):
    study = toy_study
    fig = hypervolume_figure(study)
    hv = [v for trace in fig.data for v in trace.y]
    assert len(hv) == len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])
    assert all(b >= a for a, b in zip(hv, hv[1:])) and hv[-1] > hv[0] > 0


def test_run_figures_as_html_and_png(tmp_path, toy_study, require_in_ci):
    require_in_ci(shutil.which("chromium") is not None, "chromium not installed (`make sysdeps` installs it)")
    run, study = tmp_path / "run", toy_study
    written = write_run_figures(run, study, trials_frame(study), pareto_frame(study))
    assert written.png_note == ""
    for name in ("pareto", "layers", "hypervolume"):
        assert (run / f"{name}.html").exists()
        png = (run / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
