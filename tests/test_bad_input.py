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


def test_budget_accepts_units():
    from automc.cli import parse_duration

    assert [parse_duration(t, "--budget") for t in ("600", "90s", "30m", "1.5h")] == [600, 90, 1800, 5400]


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
