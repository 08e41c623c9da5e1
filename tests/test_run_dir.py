"""A run's record (run.json): one frozen RunInfo, read and written in one place."""

from __future__ import annotations

import json

import pytest

from automc import UserInputError
from automc.run_dir import RUN_JSON, RunInfo, new_run_dir


def test_a_record_round_trips_and_an_old_one_reads_with_what_old_runs_did(tmp_path):
    info = RunInfo(model="demo-cnn", profile="x86-avx2", space="default", model_source={"kind": "builtin", "spec": "demo-cnn"},
                   n_trials=12, proxy="finetune", min_accuracy=0.9, input_shape=(1, 1, 32, 32))
    info.write(tmp_path)
    assert RunInfo.read(tmp_path) == info
    assert json.loads((tmp_path / RUN_JSON).read_text())["input_shape"] == [1, 1, 32, 32]

    (tmp_path / RUN_JSON).write_text(json.dumps({"model": "demo-cnn", "profile": "x86-vnni", "space": "default",
                                                 "a_field_of_the_future": 1}))
    old = RunInfo.read(tmp_path)
    assert (old.proxy, old.promote, old.min_accuracy, old.model_source) == ("eval", None, None, None)
    assert (old.profile_source, old.space_source) == ("x86-vnni", "default")


def test_a_run_directory_resumes_only_the_same_search(tmp_path):
    info = RunInfo(model="demo-cnn", profile="x86-avx2", space="default", n_trials=10)
    info.check_resumable(tmp_path / "new")  # nothing there yet
    info.write(tmp_path)
    RunInfo(model="demo-cnn", profile="x86-avx2", space="default", n_trials=40, seed=3).check_resumable(tmp_path)
    with pytest.raises(UserInputError, match="--run-dir .*proxy 'eval', not 'finetune'"):
        RunInfo(model="demo-cnn", profile="x86-avx2", space="default", proxy="finetune").check_resumable(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="is not an automc run"):
        info.check_resumable(other)
    with pytest.raises(UserInputError, match="RUN .*no run.json"):
        RunInfo.read(other)


def test_new_run_directories_never_collide(tmp_path):
    first = new_run_dir("demo-cnn", "x86-avx2", tmp_path)
    first.mkdir()
    second = new_run_dir("demo-cnn", "x86-avx2", tmp_path)
    assert second != first and second.name.startswith(first.name)
