"""Bad input: one line naming the file/option, the field and the fix; exit code 2; nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from automc.cli import app
from automc.errors import UserInputError
from automc.profiles import load_profile
from automc.search.space import load_space

runner = CliRunner()


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _space(**over):
    data = yaml.safe_load(Path("search_spaces/default.yaml").read_text())
    data.update(over)
    return data


def test_shipped_files_load():
    assert load_space("default").name == "default"
    for name in ("x86-vnni", "x86-avx2", "arm-cpu", "cuda-gpu"):
        assert load_profile(name).name == name


def test_unknown_profile_cli():
    res = runner.invoke(app, ["search", "--profile", "no-such-device", "--trials", "1"])
    assert res.exit_code == 2
    assert "--profile" in res.output and "no-such-device" in res.output and "x86-avx2" in res.output
    assert "Traceback" not in res.output


def test_unknown_space_cli():
    res = runner.invoke(app, ["calibrate", "--space", "nope"])
    assert res.exit_code == 2 and "--space" in res.output and "default" in res.output


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.yaml", "name: x\nkinds: {conv: [1, 2\n")
    with pytest.raises(UserInputError, match=r"bad.yaml.*line \d+.*malformed YAML"):
        load_space(str(path))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_prune_ratio_names_field(tmp_path, ratio):
    path = _write(tmp_path, "s.yaml", _space(kinds={"pwconv": {"prune": [0.0, ratio]}}))
    with pytest.raises(UserInputError) as err:
        load_space(str(path))
    msg = str(err.value)
    assert "s.yaml" in msg and "kinds.pwconv.prune" in msg and "[0, 1)" in msg
    assert "\n" not in msg


def test_bits_profile_cannot_run(tmp_path, demo):
    import automc.api as api

    path = _write(tmp_path, "s.yaml", _space(kinds={"pwconv": {"bits": ["32/32", "3/8"]}}))
    with pytest.raises(UserInputError, match=r"bit-width 3 cannot run on profile 'x86-avx2'.*kernel_dtype"):
        api.prepare(demo.model, demo.example_input, demo.evaluate, "x86-avx2", str(path), None)


def test_space_matching_no_layer(tmp_path, demo):
    import automc.api as api

    path = _write(tmp_path, "s.yaml", _space(skip=["*"]))
    with pytest.raises(UserInputError, match="matches no layer"):
        api.prepare(demo.model, demo.example_input, demo.evaluate, "x86-avx2", str(path), None)


def test_bad_profile_field(tmp_path):
    data = yaml.safe_load(Path("hw_profiles/x86-avx2.yaml").read_text())
    data["kernel_dtype"] = {32: "float32", 8: "int9"}
    path = _write(tmp_path, "p.yaml", data)
    with pytest.raises(UserInputError, match=r"p.yaml: field 'kernel_dtype'.*int9"):
        load_profile(str(path))


def test_existing_foreign_directory_is_not_overwritten(tmp_path, quick_profile_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--trials", "1", "--run-dir", str(run)])
    assert res.exit_code == 2 and "not an automc run" in res.output
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_run_of_other_search_is_not_overwritten(tmp_path, quick_profile_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"model": "demo-cnn", "profile": "arm-cpu", "space": "default"}))
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--trials", "1", "--run-dir", str(run)])
    assert res.exit_code == 2 and "profile" in res.output
    assert json.loads((run / "run.json").read_text())["profile"] == "arm-cpu"


@pytest.mark.parametrize("command", ["search", "calibrate"])
def test_bad_budget_names_option_and_fix(command):
    res = runner.invoke(app, [command, "--budget", "ten minutes"])
    assert res.exit_code == 2
    assert "--budget" in res.output and "30m" in res.output


@pytest.mark.parametrize("budget", ["0", "0m", "-5"])
def test_budget_must_be_positive(budget):
    res = runner.invoke(app, ["search", "--budget", budget])
    assert res.exit_code == 2 and "--budget" in res.output and "positive" in res.output


def test_unknown_sampler_fails_before_anything_runs(tmp_path, quick_profile_path):
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--sampler", "cmaes",
                              "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "--sampler" in res.output and "nsga3" in res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["bits", "prune", "rank"])
def test_empty_choice_list_names_the_field(tmp_path, field):
    path = _write(tmp_path, "s.yaml", _space(kinds={"pwconv": {field: []}}))
    with pytest.raises(UserInputError, match=rf"s.yaml.*{field}.*is empty"):
        load_space(str(path))


def test_settings_a_layer_kind_cannot_take_are_named_in_a_warning(tmp_path, demo):
    from automc import api

    path = _write(tmp_path, "s.yaml", _space(kinds={"conv": {"bits": ["32/32"], "rank": [1.0, 0.5]},
                                                    "linear": {"bits": ["32/32", "8/8"], "prune": [0.0, 0.5]}},
                                             skip=[]))
    with pytest.warns(UserWarning) as caught:
        api.prepare(demo.model, demo.example_input, demo.evaluate, "x86-avx2", str(path), None)
    said = " ".join(str(w.message) for w in caught)
    assert "'rank' on conv layers" in said and "'prune' on linear layers" in said


def test_export_of_a_failed_trial_is_one_line(tmp_path, quick_profile_path):
    from automc.search.pareto import journal_storage, STUDY_NAME
    import optuna

    run = tmp_path / "run"
    res = runner.invoke(app, ["search", "--profile", str(quick_profile_path), "--trials", "1", "--budget", "10",
                              "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(run))
    trial = study.ask()
    trial.set_user_attr("error", "ValueError: boom")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    res = runner.invoke(app, ["export", str(run), "--trial", str(trial.number), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "FAIL" in res.output and "boom" in res.output and "Traceback" not in res.output


def test_budget_accepts_units():
    from automc.cli import parse_duration

    assert [parse_duration(t, "--budget") for t in ("600", "90s", "30m", "1.5h")] == [600, 90, 1800, 5400]


_FACTORY = """
import torch
def build():
    return {"model": torch.nn.Linear(4, 2), "example_input": torch.zeros(1, 4), "calib_batches": [torch.zeros(8, 4)],
            "val": (torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))}
def broken():
    raise RuntimeError("checkpoint not found")
def no_data():
    return {"model": torch.nn.Linear(4, 2), "example_input": torch.zeros(1, 4)}
def wrong_shape():
    return {"model": torch.nn.Linear(4, 2), "example_input": torch.zeros(1, 5), "calib_batches": [torch.zeros(8, 4)],
            "evaluate": lambda m: 1.0}
"""


@pytest.mark.parametrize("spec,says", [
    ("no/such/file.py:build", "no file"),
    ("{f}:nope", "defines no function 'nope'"),
    ("{f}:broken", "the factory raised RuntimeError: checkpoint not found"),
    ("{f}:no_data", "'calib_batches' must be a non-empty list"),
    ("{f}:wrong_shape", "does not run on its example_input of shape [1, 5]"),
    ("resnet-big", "neither a built-in model"),
])
def test_bad_model_factory_is_one_line_naming_it(tmp_path, spec, says):
    factory = tmp_path / "factory.py"
    factory.write_text(_FACTORY)
    res = runner.invoke(app, ["search", "--model", spec.format(f=factory), "--trials", "1", "--run-dir",
                              str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "--model" in res.output and says in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_bad_exported_program_or_data_is_one_line(tmp_path, demo):
    import torch

    program, data = tmp_path / "m.pt2", tmp_path / "d.pt"
    torch.export.save(torch.export.export(demo.model, (demo.example_input,)), str(program))
    (tmp_path / "junk.pt2").write_text("not a program")
    torch.save({"calib": torch.zeros(8, 1, 32, 32)}, tmp_path / "partial.pt")
    torch.save({"calib": torch.zeros(8, 1, 16, 16), "val_x": torch.zeros(8, 1, 16, 16),
                "val_y": torch.zeros(8, dtype=torch.long)}, data)
    cases = [([str(tmp_path / "junk.pt2"), "--data", str(data)], "not a torch.export program that loads"),
             ([str(program)], "needs its data file"),
             ([str(program), "--data", str(tmp_path / "partial.pt")], "missing tensor(s) val_x, val_y"),
             ([str(program), "--data", str(data)], "samples of shape [1, 16, 16], the program takes [1, 32, 32]"),
             (["demo-cnn", "--data", str(data)], "only a --model .pt2 program takes a data file")]
    for args, says in cases:
        res = runner.invoke(app, ["search", "--model", *args, "--trials", "1", "--run-dir", str(tmp_path / "run")])
        assert res.exit_code == 2, (args, res.output)
        assert says in " ".join(res.output.split()), (args, res.output)
        assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_an_operation_the_deploy_path_cannot_lower_is_named_before_calibration():
    import torch
    from torch import nn

    from automc import api

    class Bessel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return torch.special.bessel_j0(self.conv(x)).mean((2, 3))

    with pytest.raises(UserInputError, match="cannot export to TVM Relax.*special_bessel_j0"):
        api.prepare(Bessel().eval(), torch.randn(1, 3, 8, 8), lambda m: 1.0, "x86-avx2", "default", None)
def test_unknown_proxy_names_the_flag_before_anything_runs(tmp_path):
    res = runner.invoke(app, ["search", "--proxy", "oracle", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "--proxy" in res.output and "oracle" in res.output and "finetune" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("floor", ["97", "0", "-0.5"])
def test_accuracy_floor_must_be_a_fraction(tmp_path, floor):
    res = runner.invoke(app, ["search", "--min-accuracy", floor, "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "--min-accuracy" in res.output and "0.97" in res.output


def test_accuracy_floor_in_a_space_yaml(tmp_path):
    assert load_space(str(_write(tmp_path, "ok.yaml", _space(min_accuracy=0.97)))).min_accuracy == 0.97
    with pytest.raises(UserInputError, match="min_accuracy"):
        load_space(str(_write(tmp_path, "bad.yaml", _space(min_accuracy=97))))


@pytest.mark.parametrize(("args", "flag"), [(["--steps", "0"], "--steps"), (["--steps", "-5"], "--steps"),
                                            (["--budget", "0"], "--budget"), (["--budget", "soon"], "--budget")])
def test_export_recovery_budget_must_be_positive(tmp_path, args, flag):
    # checked before the run is even opened
    res = runner.invoke(app, ["export", str(tmp_path / "no-run"), "--trial", "0", "--out", str(tmp_path / "x"),
                              "--finetune", *args])
    assert res.exit_code == 2 and flag in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [(["--promote", "oracle"], "--promote: unknown"),
                                               (["--promote", "eval"], "--promote: 'eval' is the --proxy")])
def test_bad_promotion_names_the_flag(tmp_path, args, message):
    res = runner.invoke(app, ["search", *args, "--run-dir", str(tmp_path / "run"), "--trials", "1"])
    assert res.exit_code == 2 and message in res.output and not (tmp_path / "run").exists()
