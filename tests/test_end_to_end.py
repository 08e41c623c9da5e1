"""The three workflows end to end through the CLI and the Python API: real search (Optuna),
real TVM builds measured on this host, real export whose outputs match PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import automc
from automc.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, quick_profile_path):
    run = tmp_path_factory.mktemp("runs") / "demo"
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--trials", "12",
                              "--budget", "30", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    assert "pareto.html" in res.output
    return run


def test_search_writes_the_run_directory(run_dir):
    for name in ("run.json", "study.journal", "trials.csv", "pareto.json", "pareto.html"):
        assert (run_dir / name).exists(), name
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 12
    assert {"fp32", "int8", "prune"} <= set(trials["baseline"].dropna())
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) >= 10
    assert (done["latency_ms"] > 0).all() and (done["size_bytes"] > 0).all()
    fp32 = done[done["baseline"] == "fp32"].iloc[0]
    int8 = done[done["baseline"] == "int8"].iloc[0]
    assert int8["size_bytes"] < 0.4 * fp32["size_bytes"]   # 8-bit weights + per-channel scales
    assert fp32["accuracy"] > 0.9
    front = json.loads((run_dir / "pareto.json").read_text())
    assert len(front) >= 2 and all("candidate" in row for row in front)
    html = (run_dir / "pareto.html").read_text()
    assert "plotly" in html and "int8" in html
    info = json.loads((run_dir / "run.json").read_text())
    assert info["latency_source"] == "calibrated" and info["host"]


def test_resume_adds_only_missing_trials(run_dir, quick_profile_path):
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--trials", "14",
                              "--budget", "1", "--run-dir", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(run_dir / "trials.csv")) == 14


def test_pareto_command_prints_front(run_dir):
    res = runner.invoke(app, ["pareto", str(run_dir)])
    assert res.exit_code == 0, res.output
    front = json.loads((run_dir / "pareto.json").read_text())
    assert "Pareto front" in res.output
    assert all(f"│ {row['trial']:>5} │" in res.output for row in front)


def test_export_and_validate_commands(run_dir, tmp_path):
    front = json.loads((run_dir / "pareto.json").read_text())
    trial = front[0]["trial"]
    res = runner.invoke(app, ["export", str(run_dir), "--trial", str(trial), "--out", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    assert "measured" in res.output and "predicted" in res.output
    assert (tmp_path / "exp" / "model.so").exists()
    report = json.loads((tmp_path / "exp" / "export_report.json").read_text())
    assert report["max_abs_diff"] < 0.1
    res = runner.invoke(app, ["validate", str(run_dir), "--limit", "2"])
    assert res.exit_code == 0, res.output
    assert "Kendall" in res.output and "within ±10%" in res.output


def test_export_with_recovery_ships_the_recovered_weights(run_dir, tmp_path):
    from automc.model.data import load_digits_split

    trials = pd.read_csv(run_dir / "trials.csv")
    trial = int(trials.loc[trials["baseline"] == "prune", "number"].item())  # the most to recover
    out = tmp_path / "recovered"
    res = runner.invoke(app, ["export", str(run_dir), "--trial", str(trial), "--out", str(out), "--finetune",
                              "--steps", "20"])
    assert res.exit_code == 0, res.output
    assert "recovery: accuracy" in res.output
    config = json.loads((out / "config.json").read_text())
    rec = config["recovery"]
    assert rec["steps"] == 20 and rec["accuracy_after"] > rec["accuracy_before"]
    # the library was checked against the recovered torch model, which is the model.pt2 shipped
    assert json.loads((out / "export_report.json").read_text())["max_abs_diff"] < 0.1
    data = load_digits_split()
    saved = torch.export.load(str(out / "model.pt2")).module()
    assert _accuracy_one_by_one(saved, data.val_x, data.val_y) == rec["accuracy_after"]


def _accuracy_one_by_one(program_module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of an exported program's module (fixed batch 1; it refuses .eval())."""
    with torch.no_grad():
        hits = sum(int(program_module(x[i:i + 1]).argmax(1).item() == y[i]) for i in range(len(y)))
    return hits / len(y)


def test_export_unknown_trial_is_a_clear_error(run_dir, tmp_path):
    res = runner.invoke(app, ["export", str(run_dir), "--trial", "999", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--trial 999" in res.output


def test_profiles_command_labels_uncalibrated():
    res = runner.invoke(app, ["profiles"])
    assert res.exit_code == 0, res.output
    assert "arm-cpu" in res.output and "cuda-gpu" in res.output and "UNCALIBRATED" in res.output


class TinyMLP(torch.nn.Module):
    """A user's own model: nothing automc ships."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture(scope="module")
def users_model():
    """A user's own model trained on the 8×8 digits: (model, inputs, evaluate)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = TinyMLP()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:1400]), y[:1400]).backward()
        opt.step()

    def evaluate(m):
        with torch.no_grad():
            return float((m(x[1400:]).argmax(1) == y[1400:]).float().mean())

    return model.eval(), x, evaluate


def test_python_api_with_a_users_own_model(tmp_path, quick_profile, users_model, capsys, monkeypatch):
    monkeypatch.setenv("AUTOMC_CACHE", str(tmp_path / "cache"))  # calibrated here from nothing, bar drawn
    model, x, evaluate = users_model
    result = automc.search(model.eval(), x[:1], evaluate, profile=quick_profile, n_trials=6,
                           calib_batches=[x[:128]], run_dir=tmp_path / "run", calibration_budget_s=15)
    said = capsys.readouterr().out
    assert "calibrating: candidate models" in said and "6/6" in said  # the CLI's bars, from the API too
    front = result.pareto
    assert len(front) >= 1 and (front["accuracy"] > 0.8).all()
    assert result.plot().data
    report = result.export(int(front.iloc[0]["trial"]), tmp_path / "export")
    assert report.measured_ms > 0 and report.max_abs_diff < 0.1

    # the run reopens: its front from the stored trials alone; to export, the model is given again
    again = automc.open_run(tmp_path / "run")
    pd.testing.assert_frame_equal(again.pareto, front)
    with pytest.raises(automc.UserInputError, match="open_run.*model="):
        again.export(int(front.iloc[0]["trial"]), tmp_path / "export-2")
    again = automc.open_run(tmp_path / "run", model=model.eval(), example_input=x[:1], evaluate=evaluate)
    assert again.export(int(front.iloc[0]["trial"]), tmp_path / "export-2").max_abs_diff < 0.1

    with pytest.raises(automc.UserInputError, match="--finetune.*train_batches"):  # none were given
        result.export(int(front.iloc[0]["trial"]), tmp_path / "recovered", finetune=True)



def test_a_users_factory_searches_reopens_and_exports_from_the_cli(tmp_path, quick_profile_path):
    """examples/my_model.py:build (residual + SE + SiLU/GELU + split/concat/shuffle + LayerNorm)
    searched with no edit to automc; `pareto` reads the stored trials without rebuilding the model
    (its file is gone by then), `export` rebuilds it from run.json."""
    import shutil

    example = Path("examples/my_model.py")
    factory = tmp_path / "user" / "my_model.py"
    factory.parent.mkdir()
    shutil.copy(example, factory)
    if example.with_suffix(".pt").exists():  # the example's trained checkpoint, when made before
        shutil.copy(example.with_suffix(".pt"), factory.with_suffix(".pt"))
    run = tmp_path / "run"
    res = runner.invoke(app, ["search", "--model", f"{factory}:build", "--profile", str(quick_profile_path),
                              "--trials", "6", "--budget", "20", "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "run.json").read_text())
    assert info["model_source"] == {"kind": "factory", "spec": f"{factory.resolve()}:build"}
    front = pd.read_json(run / "pareto.json")
    assert (front["accuracy"] > 0.5).any()

    moved = factory.rename(tmp_path / "elsewhere.py")
    res = runner.invoke(app, ["pareto", str(run)])
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and f"{front['latency_ms'].min():.3f}" in res.output
    moved.rename(factory)
    res = runner.invoke(app, ["export", str(run), "--trial", "1", "--out", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "export" / "model.onnx").exists() and (tmp_path / "export" / "model.so").exists()


def test_a_saved_exported_program_with_its_data_searches_and_exports(tmp_path, quick_profile_path, demo):
    """`--model model.pt2 --data data.pt`: the program's convs, linears and batch norms become
    modules again under their original names, so the default space applies as to the model."""
    from automc.model.data import load_digits_split

    data = load_digits_split()
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=512)}}  # so data runs in batches of 64
    torch.export.save(torch.export.export(demo.model, (demo.calib_batches[0][:2],), dynamic_shapes=batch),
                      str(tmp_path / "model.pt2"))
    torch.save({"calib": data.calib_x[:128], "val_x": data.val_x[:200], "val_y": data.val_y[:200]},
               tmp_path / "data.pt")
    run = tmp_path / "run"
    res = runner.invoke(app, ["search", "--model", str(tmp_path / "model.pt2"), "--data", str(tmp_path / "data.pt"),
                              "--profile", str(quick_profile_path), "--trials", "6", "--budget", "20",
                              "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    trials = pd.read_csv(run / "trials.csv")
    fp32 = trials[trials["baseline"] == "fp32"].iloc[0]
    assert fp32["accuracy"] > 0.9  # the lifted program scores as the model it came from
    from automc.search.pareto import load_study

    layers = json.loads(load_study(run).trials[int(fp32["number"])].user_attrs["candidate"])["layers"]
    assert {"blocks.1.expand.0", "head_conv.0"} <= set(layers)
    # the run keeps its own copy of the program and data: it reopens after the originals are gone
    assert json.loads((run / "run.json").read_text())["model_source"] == {"kind": "exported", "spec": "model.pt2",
                                                                        "data": "data.pt"}
    (tmp_path / "model.pt2").unlink()
    (tmp_path / "data.pt").unlink()
    res = runner.invoke(app, ["export", str(run), "--trial", "1", "--out", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "export" / "model.so").exists()


def test_python_api_with_a_proxy_a_floor_and_a_recovered_export(tmp_path, quick_profile, users_model):
    model, x, evaluate = users_model
    with pytest.raises(automc.UserInputError, match="--proxy"):
        automc.search(model, x[:1], evaluate, profile=quick_profile, proxy="oracle", run_dir=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    result = automc.search(model, x[:1], evaluate, profile=quick_profile, n_trials=4, calib_batches=[x[:128]],
                           train_batches=[x[:256], x[256:512]], proxy="sensitivity", promote="finetune",
                           min_accuracy=0.5, run_dir=tmp_path / "run", calibration_budget_s=15, progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["proxy"], info["promote"], info["min_accuracy"]) == ("sensitivity", "finetune", 0.5)
    assert result.context.space.min_accuracy == 0.5
    assert "finetune" in set(result.trials["fidelity"])  # the first trial always joins the front
    trial = int(result.pareto.iloc[-1]["trial"])
    report = result.export(trial, tmp_path / "export", finetune=automc.RecoveryBudget(steps=20))
    assert report.recovery is not None and report.recovery.steps == 20
    assert 0.8 < report.recovery.accuracy_after <= 1.0
    # the library was checked against the recovered model, and model.pt2 is that model
    assert report.max_abs_diff < 0.1
    saved = torch.export.load(str(tmp_path / "export" / "model.pt2")).module()
    from sklearn.datasets import load_digits

    labels = torch.tensor(load_digits().target)[1400:]
    # evaluate takes its mean in float32
    assert _accuracy_one_by_one(saved, x[1400:], labels) == pytest.approx(report.recovery.accuracy_after, abs=1e-6)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["recovery"]["accuracy_after"] == report.recovery.accuracy_after
