"""The embedded default model: a small MobileNet-style CNN for 32×32 grayscale digits.

Stem conv, inverted-residual blocks (1×1 expand, 3×3 depthwise, 1×1 project, residual add
where shapes allow) and a linear head, so that quantization, pruning, low-rank and cell
choices all apply to it.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d + BatchNorm2d (+ ReLU6)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=False))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block. ``use_res`` is true when stride is 1 and channels match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.expand = ConvBNAct(cin, hidden, 1)
        self.dw = ConvBNAct(hidden, hidden, 3, stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.use_res else y


# (out_channels, stride, expand) per block
DEMO_BLOCKS: tuple[tuple[int, int, int], ...] = (
    (16, 1, 4),
    (24, 2, 4),
    (24, 1, 4),
    (32, 2, 4),
    (32, 1, 4),
)


class DemoCNN(nn.Module):
    """≈40 k parameters, ≈6 M MACs at 1×1×32×32."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16):
        super().__init__()
        self.stem = ConvBNAct(in_channels, width, 3)
        blocks = []
        cin = width
        for cout, stride, expand in DEMO_BLOCKS:
            blocks.append(InvertedResidual(cin, cout, stride, expand))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvBNAct(cin, 64, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
