from __future__ import annotations

import torch
from torch import nn

from automc.compress import QuantizedLayer, apply_candidate
from automc.types import Candidate, LayerChoice


def _mixed(table) -> Candidate:
    layers = {name: LayerChoice(8, 8) for name in table.names}
    layers["blocks.1.expand.0"] = LayerChoice(8, 8, prune=0.25)
    layers["head_conv.0"] = LayerChoice(4, 8, prune=0.5)
    layers["blocks.3.project.0"] = LayerChoice(8, 8, rank=0.5)
    return Candidate(layers=layers, cells={"blocks.2": "skip", "blocks.4": "half"})


def test_identity_candidate_gives_identical_outputs(demo, calib, batch):
    m = apply_candidate(demo.model, Candidate(), demo.example_input, calib)
    assert m is not demo.model and not m.training
    with torch.no_grad():
        assert torch.equal(m(batch), demo.model(batch))


def test_callers_model_is_unchanged(demo, calib, table, batch):
    before = {k: v.clone() for k, v in demo.model.state_dict().items()}
    modules = [(n, type(m)) for n, m in demo.model.named_modules()]
    with torch.no_grad():
        out_before = demo.model(batch)
    apply_candidate(demo.model, _mixed(table), demo.example_input, calib)
    after = demo.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [(n, type(m)) for n, m in demo.model.named_modules()] == modules
    assert not demo.model.training
    with torch.no_grad():
        assert torch.equal(demo.model(batch), out_before)


def test_everything_composes(demo, calib, table, batch):
    m = apply_candidate(demo.model, _mixed(table), demo.example_input, calib)
    assert isinstance(m.blocks[2], nn.Identity)
    assert m.blocks[1].expand[0].inner.out_channels == 48
    assert m.blocks[4].expand[0].inner.out_channels == 64
    assert m.head_conv[0].w_bits == 4 and m.head_conv[0].inner.out_channels == 32
    assert m.classifier.inner.in_features == 32
    assert all(isinstance(f, QuantizedLayer) for f in m.blocks[3].project[0])
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) == 1 + 4 * 3 + 1  # BN kept: stem, 4 blocks, head
    assert all(not x.training for x in m.modules())
    assert m(batch).shape == (16, 10)
