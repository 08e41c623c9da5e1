from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from automc.compress import QuantizedLayer, apply_candidate
from automc.compress.quantize import calibrate_ranges
from automc.types import Candidate, LayerChoice


def _inputs_of(model: nn.Module, layer: QuantizedLayer, batch: torch.Tensor) -> torch.Tensor:
    """What the wrapped conv/linear really received (after activation fake-quant)."""
    seen = {}
    hook = layer.inner.register_forward_hook(lambda mod, i, o: seen.update(x=i[0]))
    with torch.no_grad():
        model(batch)
    hook.remove()
    return seen["x"]


@pytest.mark.parametrize("w_bits", [8, 4])
def test_weights_on_per_channel_grid(demo, w_bits):
    conv = demo.model.blocks[2].expand[0]
    q = QuantizedLayer(copy.deepcopy(conv), w_bits, 32)  # QuantizedLayer rewrites inner's weight
    w = q.inner.weight.detach().flatten(1)
    qmax = 2 ** (w_bits - 1) - 1
    assert q.w_scale.shape == (96,)
    levels = w / q.w_scale[:, None]
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert float(levels.abs().max()) <= qmax + 1e-3
    assert max(len(torch.unique(row)) for row in w) <= 2 ** w_bits - 1
    torch.testing.assert_close(q.w_scale, conv.weight.detach().abs().flatten(1).amax(1) / qmax)
    assert torch.equal(conv.weight, demo.model.blocks[2].expand[0].weight)  # the original untouched


def test_activation_grids_signed_and_unsigned(demo, calib, batch):
    cand = Candidate(layers={"stem.0": LayerChoice(8, 8), "blocks.0.project.0": LayerChoice(8, 8)})
    m = apply_candidate(demo.model, cand, demo.example_input, calib)
    stem, proj = m.stem[0], m.blocks[0].project[0]
    assert isinstance(stem, QuantizedLayer) and isinstance(proj, QuantizedLayer)
    assert stem.a_signed and not proj.a_signed  # normalized image vs post-ReLU6
    assert stem.a_scale == pytest.approx(1.0 / 127, rel=0.05)  # inputs span [-1, 1]
    for layer, lo, hi in ((stem, -127, 127), (proj, 0, 255)):
        levels = _inputs_of(m, layer, batch) / layer.a_scale
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert float(levels.min()) >= lo - 1e-3 and float(levels.max()) <= hi + 1e-3
        assert len(torch.unique(levels.round())) > 50  # the grid is really used


def test_a_bits_32_leaves_input_float(demo, calib, batch):
    m = apply_candidate(demo.model, Candidate(layers={"stem.0": LayerChoice(4, 32)}), demo.example_input, calib)
    assert torch.equal(_inputs_of(m, m.stem[0], batch), batch)


def test_factorized_layer_quantizes_both_factors(demo, calib, batch):
    cand = Candidate(layers={"blocks.2.project.0": LayerChoice(w_bits=8, a_bits=8, rank=0.5)})
    m = apply_candidate(demo.model, cand, demo.example_input, calib)
    first, second = m.blocks[2].project[0]
    assert isinstance(first, QuantizedLayer) and isinstance(second, QuantizedLayer)
    assert first.inner.out_channels == 12 and not first.a_signed and second.a_signed
    assert m(batch).shape == (16, 10)


def test_uncalibrated_layer_refuses_to_run():
    q = QuantizedLayer(nn.Linear(4, 2), 8, 8)
    with pytest.raises(RuntimeError, match="calibrat"):
        q(torch.randn(1, 4))
    calibrate_ranges(q, [torch.rand(8, 4)])
    assert not q.a_signed and q(torch.randn(1, 4)).shape == (1, 2)


def test_activation_range_survives_state_dict():
    q = QuantizedLayer(nn.Linear(4, 2), 8, 8)
    calibrate_ranges(q, [torch.randn(8, 4)])
    fresh = QuantizedLayer(nn.Linear(4, 2), 8, 8)
    fresh.load_state_dict(q.state_dict())
    assert (fresh.a_scale, fresh.a_signed, fresh.calibrated) == (q.a_scale, q.a_signed, True)


def test_bad_bits_raise():
    with pytest.raises(ValueError):
        QuantizedLayer(nn.Linear(4, 2), 1, 8)
    with pytest.raises(TypeError):
        QuantizedLayer(nn.ReLU(), 8, 8)
