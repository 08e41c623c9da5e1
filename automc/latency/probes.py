"""Probe networks: random small CNNs that cover the kernel space beyond one model's search space.

A predictor calibrated only on one model's candidates knows that model's kernels and nothing
else; its regressor cannot extrapolate to the full 3×3 convs of a ResNet when it has only
seen 1×1 and depthwise ones (measured: a held-out ResNet under-predicted by ~40%). nn-Meter
samples the kernel configuration space itself; this is the same idea at the level automc
measures: each probe is a short chain of conv-BN-ReLU blocks with configurations drawn from a
generic distribution (kernel 1/3/5, depthwise or not, stride 1/2, channels 4–128, 8²–56²
inputs), each layer fp32 or int8 at random. As in real CNNs, a block keeps its input's width
half the time (a stage), so that half of the same-width stride-1 blocks add their input back
(a residual fused into the conv's epilogue), and planes halve only down to 4×4. Probes are
compiled and measured whole like any candidate, so their kernels are timed inside a model,
with their epilogues.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import nn

from automc.types import Candidate, LayerChoice

_CHANNELS = (4, 6, 8, 9, 12, 16, 18, 24, 32, 36, 48, 64, 96, 128)
_SIZES = (8, 14, 16, 28, 32, 56)


class _Block(nn.Module):
    """conv → BN → ReLU, with a residual add when shapes allow and the draw says so."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, depthwise: bool, residual: bool):
        super().__init__()
        groups = cin if depthwise else 1
        self.conv = nn.Conv2d(cin, cout if not depthwise else cin, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout if not depthwise else cin)
        self.act = nn.ReLU()
        self.residual = residual and stride == 1 and (depthwise or cin == cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x)))
        return x + y if self.residual else y


@dataclass(frozen=True)
class Probe:
    """A probe network, its input and the per-layer bit-widths it is measured with."""

    model: nn.Module
    example_input: torch.Tensor
    candidate: Candidate


def probe_networks(n: int, seed: int = 0) -> list[Probe]:
    """``n`` random probe networks (seeded): 3–6 blocks each, then global pooling and a linear
    head; about half their layers int8, the rest fp32. (With 2–4 blocks few convs sat between
    two packed ones, where activations stay blocked: a held-out ResNet's blocked int8 3×3
    convs were predicted 30% slow.) Widths kept half the time and planes not halved below
    4×4: drawn independently (this sampler's predecessor), 96 probes gave 4 residual k×k
    convs of 162 and 38% of them on planes of 4×4 or less, where every conv of the built-in
    models sits on 7×7 or more (a 224² input's last stage) and a ResNet's fuse a residual every
    second conv; now 37 of 179, and 13% on 4×4."""
    rng = random.Random(seed)
    probes = []
    for _ in range(n):
        torch.manual_seed(rng.randrange(2**31))
        cin, size = rng.choice(_CHANNELS), rng.choice(_SIZES)
        blocks: list[nn.Module] = []
        c, plane = cin, size
        for _ in range(rng.randint(3, 6)):
            depthwise = rng.random() < 0.3
            cout = c if depthwise or rng.random() < 0.5 else rng.choice(_CHANNELS)
            k = rng.choice((3, 3, 5)) if depthwise else rng.choice((1, 1, 3, 3, 5))
            stride = rng.choice((1, 1, 2)) if plane >= 8 else 1
            blocks.append(_Block(c, cout, k, stride, depthwise, rng.random() < 0.5))
            c, plane = cout, -(-plane // stride)
        model = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)).eval()
        x = torch.randn(1, cin, size, size)
        layers = [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        choices = {name: LayerChoice(8, 8) for name in layers if rng.random() < 0.5}
        probes.append(Probe(model, x, Candidate(layers=choices)))
    return probes
