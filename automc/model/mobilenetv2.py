"""MobileNetV2 (Sandler et al. 2018) with the layer structure of torchvision's ``mobilenet_v2``.

Written here because torchvision is not a dependency (and does not import in this venv). The
layers match torchvision's one for one — stem 3×3 conv stride 2 (32), 17 inverted-residual
blocks, 1×1 head conv (1280), dropout, linear classifier; ReLU6 and BatchNorm throughout — so
parameter count and MACs do too (3.50 M parameters and 300 M MACs at 1×3×224×224 with 1000
classes; 2.24 M with the 10 digit classes, the classifier being most of the difference).

Module names follow :class:`~automc.model.demo_cnn.DemoCNN` (``stem``, ``blocks.N.expand/dw/
project``, ``head_conv``, ``classifier``) and the blocks are DemoCNN's own
:class:`~automc.model.demo_cnn.InvertedResidual`, so automc's cells (keep / skip / half),
pruning, low-rank and quantization apply to it as to the demo, and the default search space's
``skip: [stem.0, classifier]`` names its first and last layer. The first block has expand ratio
1 and no expand conv (as in torchvision); it is a :class:`DepthwiseSeparable`, which is not a
cell (it has neither an expand conv to halve nor a residual to skip).
"""

from __future__ import annotations

import torch
from torch import nn

from automc.model.demo_cnn import ConvBNAct, InvertedResidual

# torchvision's inverted_residual_setting: (expand t, out channels c, repeats n, first stride s)
MOBILENETV2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90% of ``v`` (torchvision)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class DepthwiseSeparable(nn.Module):
    """The expand-ratio-1 block: 3×3 depthwise conv + BN + ReLU6, then 1×1 project conv + BN."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = ConvBNAct(cin, cin, 3, stride, groups=cin)
        self.project = ConvBNAct(cin, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(x))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 for ``in_channels``×224×224 images (any size ≥ 32 works: global pooling).

    Example:
        >>> model = MobileNetV2(num_classes=1000).eval()
        >>> sum(p.numel() for p in model.parameters())
        3504872
        >>> model(torch.randn(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.2):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        self.last_channels = _make_divisible(1280 * max(1.0, width_mult))
        self.stem = ConvBNAct(in_channels, cin, 3, stride=2)
        blocks: list[nn.Module] = []
        for t, c, n, s in MOBILENETV2_SETTING:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                blocks.append(DepthwiseSeparable(cin, cout, stride) if t == 1 else InvertedResidual(cin, cout, stride, t))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvBNAct(cin, self.last_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.last_channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal (fan out) convs, N(0, 0.01) classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))
