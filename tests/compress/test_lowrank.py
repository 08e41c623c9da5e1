from __future__ import annotations

import pytest
import torch
from torch import nn

from automc.compress import apply_candidate
from automc.compress.lowrank import factorize
from automc.types import Candidate, LayerChoice


def _rank(demo, calib, name: str, rank: float):
    return apply_candidate(demo.model, Candidate(layers={name: LayerChoice(rank=rank)}), demo.example_input, calib)


def test_project_conv_factorized_to_rank_12(demo, calib, batch):
    m = _rank(demo, calib, "blocks.2.project.0", 0.5)
    pair = m.blocks[2].project[0]
    assert isinstance(pair, nn.Sequential) and len(pair) == 2
    first, second = pair
    assert (first.in_channels, first.out_channels, first.kernel_size) == (96, 12, (1, 1))
    assert (second.in_channels, second.out_channels) == (12, 24)
    assert first.bias is None and second.bias is None  # the original conv has no bias

    # the product is the best rank-12 approximation (Eckart–Young): its error is the SVD tail
    w = demo.model.blocks[2].project[0].weight.detach().flatten(1)
    prod = second.weight.detach().flatten(1) @ first.weight.detach().flatten(1)
    s = torch.linalg.svdvals(w)
    assert float((w - prod).norm()) == pytest.approx(float(s[12:].norm()), rel=1e-4)

    # on real activations the layer output stays close, the model still classifies
    acts = {}
    hook = demo.model.blocks[2].project[0].register_forward_hook(lambda mod, i, o: acts.update(x=i[0], y=o))
    with torch.no_grad():
        demo.model(batch)
        hook.remove()
        rel = float((pair(acts["x"]) - acts["y"]).norm() / acts["y"].norm())
        agree = float((m(batch).argmax(1) == demo.model(batch).argmax(1)).float().mean())
    assert rel < 0.6  # measured 0.51 at rank 12 of 24
    assert agree >= 0.8


def test_linear_factorized_with_bias_on_second(demo, calib, batch):
    m = _rank(demo, calib, "classifier", 0.5)
    first, second = m.classifier
    assert (first.in_features, first.out_features, second.out_features) == (64, 5, 10)
    assert first.bias is None
    assert torch.equal(second.bias.detach(), demo.model.classifier.bias.detach())
    assert m(batch).shape == (16, 10)


def test_full_rank_factors_reproduce_the_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 1, stride=2, bias=True)
    pair = factorize(conv, 8)
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(pair(x), conv(x), rtol=1e-4, atol=1e-5)


def test_no_factorization_when_it_does_not_save_params(demo, calib):
    m = _rank(demo, calib, "classifier", 0.9)  # r=9: 9*(64+10)=666 > 640
    assert isinstance(m.classifier, nn.Linear)
    m = _rank(demo, calib, "blocks.2.project.0", 1.0)
    assert isinstance(m.blocks[2].project[0], nn.Conv2d)


def test_lowrank_on_3x3_conv_raises(demo, calib):
    with pytest.raises(ValueError, match="blocks.2.dw.0"):
        _rank(demo, calib, "blocks.2.dw.0", 0.5)
