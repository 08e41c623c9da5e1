"""An export of a recovered model: the library computes the recovered model, not the one before."""

from __future__ import annotations

import numpy as np
import torch

from automc import RecoveryBudget, recover
from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy.export import export_model
from automc.latency.measure import run_library
from automc.types import Candidate, LayerChoice

CAND = Candidate(layers={"blocks.1.expand.0": LayerChoice(8, 8, prune=0.5), "head_conv.0": LayerChoice(8, 8)})


def test_library_matches_the_recovered_torch_model(tmp_path, demo, quick_profile):
    before = apply_candidate(demo.model, CAND, demo.example_input, demo.calib_batches[:2])
    recalibrate_bn(before, demo.calib_batches[:2])
    recovered = apply_candidate(demo.model, CAND, demo.example_input, demo.calib_batches[:2])
    recover(recovered, demo.model, demo.train_batches[:4], demo.calib_batches[:2], budget=RecoveryBudget(steps=15))
    report = export_model(recovered, demo.example_input, CAND, quick_profile, tmp_path)
    x = demo.calib_batches[0][:1]
    (out,), _ = run_library(tmp_path / "model.so", [x.numpy()], quick_profile)
    with torch.no_grad():
        want, old = recovered(x).numpy(), before(x).numpy()
    assert report.max_abs_diff < 0.1
    assert np.abs(out - want).max() < 0.1
    # recovery moved the logits further than the library is from the recovered model
    assert np.abs(out - old).max() > 3 * np.abs(out - want).max()
    saved = torch.export.load(str(tmp_path / "model.pt2")).module()  # the portable export is it too
    with torch.no_grad():
        torch.testing.assert_close(saved(x), recovered(x), rtol=1e-4, atol=1e-4)
