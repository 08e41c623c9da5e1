from __future__ import annotations

import copy

import pytest
import torch

from automc.compress import apply_candidate
from automc.compress.prune import n_to_remove
from automc.types import Candidate, LayerChoice


def _prune(demo, calib, fractions: dict[str, float]):
    cand = Candidate(layers={name: LayerChoice(prune=p) for name, p in fractions.items()})
    return apply_candidate(demo.model, cand, demo.example_input, calib)


def test_expand_prune_shrinks_its_dependents(demo, calib, batch):
    m = _prune(demo, calib, {"blocks.1.expand.0": 0.5})
    blk = m.blocks[1]
    assert blk.expand[0].out_channels == 32
    assert blk.expand[1].num_features == 32
    assert (blk.dw[0].in_channels, blk.dw[0].out_channels, blk.dw[0].groups) == (32, 32, 32)
    assert blk.project[0].in_channels == 32
    assert m(batch).shape == (16, 10)


def test_lowest_l1_channels_are_removed(demo, calib):
    w = demo.model.blocks[1].expand[0].weight.detach()
    keep = torch.argsort(w.abs().flatten(1).sum(1))[32:].sort().values
    m = _prune(demo, calib, {"blocks.1.expand.0": 0.5})
    assert torch.equal(m.blocks[1].expand[0].weight.detach(), w[keep])


def test_head_prune_shrinks_classifier(demo, calib, batch):
    m = _prune(demo, calib, {"head_conv.0": 0.25})
    assert m.head_conv[0].out_channels == 48
    assert m.classifier.in_features == 48
    assert m(batch).shape == (16, 10)


def test_residual_stream_prunes_the_whole_group(demo, calib, batch):
    m = _prune(demo, calib, {"blocks.0.project.0": 0.25})
    assert m.stem[0].out_channels == 12
    assert m.blocks[0].expand[0].in_channels == 12
    assert m.blocks[0].project[0].out_channels == 12
    assert m.blocks[1].expand[0].in_channels == 12
    assert m(batch).shape == (16, 10)


def test_depthwise_prunes_through_its_producer(demo, calib, batch):
    m = _prune(demo, calib, {"blocks.1.dw.0": 0.5})
    assert m.blocks[1].expand[0].out_channels == 32
    assert m.blocks[1].dw[0].out_channels == 32
    assert m(batch).shape == (16, 10)


def test_zero_prune_changes_nothing(demo, calib, batch):
    m = _prune(demo, calib, {"blocks.1.expand.0": 0.0, "head_conv.0": 0.0})
    with torch.no_grad():
        assert torch.equal(m(batch), demo.model(batch))


def test_rounding_keeps_at_least_one_channel(demo, calib):
    assert n_to_remove(64, 0.25) == 16
    assert n_to_remove(10, 0.33) == 3
    assert n_to_remove(2, 0.9) == 1
    assert n_to_remove(64, 0.0) == 0
    m = _prune(demo, calib, {"head_conv.0": 0.999})
    assert m.head_conv[0].out_channels == 1 and m.classifier.in_features == 1


def test_out_of_range_fraction_raises():
    with pytest.raises(ValueError):
        n_to_remove(8, 1.0)


def test_name_in_skipped_block_is_ignored(demo, calib, batch):
    cand = Candidate(layers={"blocks.2.expand.0": LayerChoice(prune=0.5, w_bits=8, a_bits=8)},
                     cells={"blocks.2": "skip"})
    m = apply_candidate(demo.model, cand, demo.example_input, calib)
    assert isinstance(m.blocks[2], torch.nn.Identity)
    assert m(batch).shape == (16, 10)


def test_unknown_layer_name_raises(demo, calib):
    with pytest.raises(ValueError, match="blocks.9.expand.0"):
        _prune(demo, calib, {"blocks.9.expand.0": 0.5})


def test_frozen_model_under_no_grad_still_prunes(demo, calib, batch):
    frozen = copy.deepcopy(demo.model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        choice = LayerChoice(w_bits=8, a_bits=8, prune=0.5, rank=0.5)
        m = apply_candidate(frozen, Candidate(layers={"blocks.1.expand.0": choice}), demo.example_input, calib)
    assert m.blocks[1].dw[0].out_channels == 32
    assert m.blocks[1].expand[0][0].inner.out_channels == 8  # pruned to 32, then rank 8 of 16
    assert not any(p.requires_grad for p in m.parameters())
    assert m(batch).shape == (16, 10)
