"""Exports without automc (``deploy.portable``): every bit-width a space offers, in standard
operators, equal to the compressed model in ONNX Runtime and as a torch.export program."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from automc.accuracy import recalibrate_bn
from automc.compress import QuantizedLayer, apply_candidate
from automc.deploy.portable import standard_module, write_portable
from automc.types import Candidate, LayerChoice

# 4-bit weights, 4-bit (clipped) activations, 16-bit grids (no QDQ), 2-bit weights, with pruning
# and low rank around them
MIXED = Candidate(layers={"stem.0": LayerChoice(4, 8), "blocks.1.expand.0": LayerChoice(8, 4, prune=0.5),
                          "blocks.2.expand.0": LayerChoice(16, 16, rank=0.5), "blocks.1.dw.0": LayerChoice(8, 8),
                          "classifier": LayerChoice(2, 8)})


@pytest.fixture(scope="module")
def compressed(demo):
    model = apply_candidate(demo.model, MIXED, demo.example_input, demo.calib_batches[:2])
    recalibrate_bn(model, demo.calib_batches[:2])
    return model.eval()


def test_standard_module_has_no_automc_layer_and_equals_the_compressed_model(compressed, demo):
    standard = standard_module(compressed)
    assert not any(isinstance(m, QuantizedLayer) for m in standard.modules())
    assert any(isinstance(m, QuantizedLayer) for m in compressed.modules())  # the original is untouched
    x = demo.calib_batches[0][:64]
    with torch.no_grad():
        got, want = standard(x).numpy(), compressed(x).numpy()
    # torch's fake-quantize rounds x·(1/scale), automc x/scale: one ulp apart, which at a tie
    # moves an activation one step (the Intel VNNI host met one in one image of 64). Such an
    # image differs a little; every other is equal to float rounding, and none changes its class
    same = np.isclose(got, want, rtol=1e-5, atol=1e-5).all(axis=1)
    assert same.sum() >= len(x) - 1, np.flatnonzero(~same)
    assert np.abs(got - want).max() < 1e-2 * np.abs(want).max()
    assert (got.argmax(1) == want.argmax(1)).all()


def test_onnx_carries_qdq_and_matches_in_onnx_runtime(compressed, demo, tmp_path):
    files = write_portable(compressed, demo.example_input, tmp_path, threads=2)
    assert all((tmp_path / f).exists() for f in files)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    # four layers at ≤ 8 bits: an activation and a weight pair each (the depthwise weight too)
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") == 8
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    x = demo.calib_batches[0][:16]
    with torch.no_grad():
        want = compressed(x).numpy()
        got_pt2 = np.concatenate([program(x[i:i + 1]).numpy() for i in range(len(x))])
    got_onnx = np.concatenate([session.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(len(x))])
    scale = np.abs(want).max()
    assert np.abs(got_pt2 - want).max() < 1e-4 * scale
    assert np.abs(got_onnx - want).max() < 1e-2 * scale
    assert (got_onnx.argmax(1) == want.argmax(1)).all()
