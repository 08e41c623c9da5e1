from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from automc.accuracy import AccuracyProxy, EvalProxy, recalibrate_bn
from automc.compress import apply_candidate
from automc.model.introspect import introspect
from automc.types import Candidate, LayerChoice


def test_recalibrate_bn_is_a_cumulative_average(demo):
    model = copy.deepcopy(demo.model)
    batches = (demo.calib_batches[0][:32], demo.calib_batches[1][:32])
    with torch.no_grad():
        feats = torch.cat([demo.model.stem[0](b) for b in batches])  # the first BN's input
    recalibrate_bn(model, batches)
    bn = model.stem[1]
    # equal-sized batches: the cumulative average of batch means is the overall mean
    torch.testing.assert_close(bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    per_batch_var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats.split(32)])
    torch.testing.assert_close(bn.running_var, per_batch_var.mean(0), rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == 2
    assert bn.momentum == demo.model.stem[1].momentum  # restored after the cumulative pass
    assert not any(m.training for m in model.modules())
    assert torch.equal(model.stem[0].weight, demo.model.stem[0].weight)  # only statistics change


def test_recalibrate_bn_repairs_corrupted_statistics(demo):
    model = copy.deepcopy(demo.model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.add_(3.0)
    x = demo.calib_batches[0]
    with torch.no_grad():
        reference = demo.model(x).argmax(1)
        broken = float((model(x).argmax(1) == reference).float().mean())
        recalibrate_bn(model, demo.calib_batches)
        repaired = float((model(x).argmax(1) == reference).float().mean())
    assert broken < 0.5 < 0.9 < repaired


def test_uniform_int8_within_one_point_of_fp32(demo):
    proxy = EvalProxy(demo.evaluate, demo.calib_batches)
    fp32 = demo.evaluate(demo.model)
    fp32_proxied = proxy(copy.deepcopy(demo.model))
    names = introspect(demo.model, demo.example_input).names
    int8 = apply_candidate(demo.model, Candidate(layers={n: LayerChoice(8, 8) for n in names}),
                           demo.example_input, demo.calib_batches)
    acc = proxy(int8)
    assert fp32 > 0.95
    # measured: fp32 0.9825; BN recalibrated on the 256 calibration images 0.97; int8 0.9675
    assert abs(fp32_proxied - fp32) <= 0.02
    assert acc >= fp32_proxied - 0.01


def test_eval_proxy_is_an_accuracy_proxy(demo):
    assert isinstance(EvalProxy(demo.evaluate, demo.calib_batches), AccuracyProxy)
    with pytest.raises(ValueError):
        EvalProxy(demo.evaluate, ())
