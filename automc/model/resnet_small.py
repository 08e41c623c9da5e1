"""A small ResNet (He et al. 2016, the CIFAR variant) for 32×32 grayscale digits.

Stem 3×3 conv, three stages of basic blocks (3×3 conv–BN–ReLU, 3×3 conv–BN, residual add,
ReLU) at 16, 32 and 64 channels, the last two starting with stride 2 and a 1×1 conv + BN
shortcut, then global average pooling and a linear head: 0.17 M parameters, 27 M MACs at
1×1×32×32 with the default two blocks a stage.

Every conv sits in an ``nn.Sequential`` directly followed by its ``BatchNorm2d`` (as in
DemoCNN's ``ConvBNAct``), which is the shape automc's lowering folds; the residual adds
tie each stage's channels together, which torch-pruning's dependency graph handles.
The first and last layers are named ``stem.0`` and ``classifier`` like the demo's, so the
default search space's ``skip`` list leaves them alone.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d, followed by ReLU when ``relu``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, relu: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers and a residual add, then ReLU. The shortcut is the identity when
    shapes match, otherwise a strided 1×1 conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3, 1, relu=False)
        self.shortcut: nn.Module = (nn.Identity() if stride == 1 and cin == cout
                                    else ConvBN(cin, cout, 1, stride, relu=False))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResNetSmall(nn.Module):
    """ResNet with ``blocks_per_stage`` basic blocks at each of ``widths``.

    Example:
        >>> model = ResNetSmall().eval()
        >>> model(torch.randn(2, 1, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: tuple[int, ...] = (16, 32, 64), blocks_per_stage: int = 2):
        super().__init__()
        self.stem = ConvBN(in_channels, widths[0], 3)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, width in enumerate(widths):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(cin, width, stride))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))
