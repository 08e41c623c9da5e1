"""compile_candidate: the one compile path (compress → Relax → tune → compile) that calibration,
the shipped check and export share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from automc.compress import apply_candidate
from automc.deploy.compile import compile_candidate
from automc.deploy.lower import kernel_specs
from automc.devices import device_runner, export_library
from automc.types import Candidate, LayerChoice

CAND = Candidate(layers={"blocks.1.expand.0": LayerChoice(8, 8, prune=0.5), "head_conv.0": LayerChoice(8, 8)})


def test_compiled_candidate_runs_the_compressed_model(demo, quick_profile, tmp_path):
    x = demo.example_input
    compiled = compile_candidate(demo.model, CAND, x, quick_profile)
    compressed = apply_candidate(demo.model, CAND, x, (x,))
    assert compiled.kernels == tuple(kernel_specs(compressed, x, quick_profile))
    (out,), _ = device_runner(quick_profile).run_library(
        export_library(compiled.executable, tmp_path / "model.so", quick_profile), [x.numpy()])
    with torch.no_grad():
        np.testing.assert_allclose(out, compressed(x).numpy(), atol=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        compiled.executable = None


def test_no_candidate_compiles_the_model_as_it_is(demo, quick_profile):
    x = demo.example_input
    compiled = compile_candidate(demo.model, None, x, quick_profile, tuned=False)
    assert compiled.compressed is demo.model
    assert compiled.kernels == tuple(kernel_specs(demo.model, x, quick_profile))

