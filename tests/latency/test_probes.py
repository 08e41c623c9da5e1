"""Probe networks (``latency.probes``): what kernels they put before calibration. No builds."""

from __future__ import annotations

import torch

from automc.compress import apply_candidate
from automc.deploy.lower import kernel_specs
from automc.latency.predictors import kernel_family
from automc.latency.probes import probe_networks


def _kxk_convs(probes, profile):
    out = []
    for p in probes:
        x = p.example_input
        model = apply_candidate(p.model, p.candidate, x, (x,)).eval()
        out += [k for k in kernel_specs(model, x, profile) if kernel_family(k).startswith("conv2d-kxk")]
    return out


def test_probes_are_seeded():
    a, b = probe_networks(3, seed=5), probe_networks(3, seed=5)
    assert [p.candidate for p in a] == [p.candidate for p in b]
    assert all(torch.equal(p.example_input, q.example_input) for p, q in zip(a, b))
    assert [str(p.model) for p in a] == [str(q.model) for q in b]


def test_probes_cover_residual_kxk_convs_on_real_planes(host_profile):
    """The k×k convs of real CNNs sit on planes of 7×7 and more, and a ResNet's fuse a residual
    add every second conv. Drawn independently, the first sampler's 96 probes gave 4 residual
    k×k convs of 162 and 38% of them on planes of 4×4 or less; this one keeps a width half the
    time and halves planes only down to 4×4."""
    convs = _kxk_convs(probe_networks(96, seed=0), host_profile)
    assert len(convs) >= 150
    assert sum(k.residual for k in convs) / len(convs) >= 0.15
    assert min(min(k.out_hw) for k in convs) >= 4
    assert sum(min(k.out_hw) <= 4 for k in convs) / len(convs) <= 0.2
    # both dtypes, with and without the residual epilogue
    assert {(k.dtype, k.residual) for k in convs} == {(d, r) for d in ("float32", "int8") for r in (False, True)}
