from __future__ import annotations

import pytest
import torch
from torch import nn

from automc.compress import apply_candidate, find_cells
from automc.model.demo_cnn import DemoCNN
from automc.types import Candidate


def test_find_cells_marks_residual_blocks(demo):
    assert find_cells(demo.model) == {
        "blocks.0": True, "blocks.1": False, "blocks.2": True, "blocks.3": False, "blocks.4": True}
    assert find_cells(nn.Sequential(nn.Conv2d(1, 1, 1))) == {}


def test_skip_residual_block_becomes_identity(demo, calib, batch):
    m = apply_candidate(demo.model, Candidate(cells={"blocks.2": "skip"}), demo.example_input, calib)
    assert isinstance(m.blocks[2], nn.Identity)
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in demo.model.parameters())
    assert m(batch).shape == (16, 10)


def test_skip_non_residual_block_raises(demo, calib):
    with pytest.raises(ValueError, match="blocks.1"):
        apply_candidate(demo.model, Candidate(cells={"blocks.1": "skip"}), demo.example_input, calib)


@pytest.mark.parametrize("cells", [{"blocks.7": "keep"}, {"blocks.0": "double"}])
def test_bad_cell_raises(demo, calib, cells):
    with pytest.raises(ValueError):
        apply_candidate(demo.model, Candidate(cells=cells), demo.example_input, calib)


def test_half_halves_hidden_channels_keeping_the_important(demo, calib, batch):
    ref = demo.model.blocks[1]
    score = ref.expand[0].weight.detach().abs().flatten(1).sum(1) * ref.expand[1].weight.detach().abs()
    keep = torch.argsort(score)[32:].sort().values
    m = apply_candidate(demo.model, Candidate(cells={"blocks.1": "half"}), demo.example_input, calib)
    blk = m.blocks[1]
    assert blk.expand[0].out_channels == 32 and blk.expand[1].num_features == 32
    assert blk.dw[0].out_channels == 32 and blk.dw[0].groups == 32
    assert blk.project[0].in_channels == 32 and blk.project[0].out_channels == 24
    assert torch.equal(blk.expand[0].weight.detach(), ref.expand[0].weight.detach()[keep])
    assert torch.equal(blk.dw[0].weight.detach(), ref.dw[0].weight.detach()[keep])
    assert m(batch).shape == (16, 10)


def test_half_residual_block_keeps_its_stream(demo, calib, batch):
    m = apply_candidate(demo.model, Candidate(cells={"blocks.4": "half"}), demo.example_input, calib)
    blk = m.blocks[4]
    assert blk.expand[0].out_channels == 64 and blk.expand[0].in_channels == 32
    assert blk.project[0].out_channels == 32 and m.head_conv[0].in_channels == 32
    assert m(batch).shape == (16, 10)


def test_cells_work_on_an_untrained_model():
    model = DemoCNN().eval()
    x = torch.randn(2, 1, 32, 32)
    m = apply_candidate(model, Candidate(cells={"blocks.0": "skip", "blocks.3": "half"}), x, (x,))
    assert m(x).shape == (2, 10)
