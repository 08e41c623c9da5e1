"""Your own model, searched from the command line without editing automc:

    automc search --model examples/my_model.py:build --trials 40

``build()`` returns what a search needs (see ``automc.model.source`` for every key): the trained
model, one example input at the shape to deploy, a few calibration batches, validation data (or
your own ``evaluate``), and unlabelled training inputs for recovery. Here the model is a small
CNN with the operations real models use (residual adds, squeeze-excitation, SiLU and GELU,
split / concat with a channel shuffle, LayerNorm), trained on scikit-learn's bundled digits on
first use and saved beside this file as ``my_model.pt`` (as you would load your checkpoint).
Nothing here is specific to automc but the data loader, which stands in for your own data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from automc.model.data import load_digits_split

CHECKPOINT = Path(__file__).with_suffix(".pt")


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3))))))
        return x * w[:, :, None, None]


class ShuffleBlock(nn.Module):
    """Half the channels through expand → depthwise → SE → project (residual), half kept; then
    concatenated and shuffled, as ShuffleNetV2 does."""

    def __init__(self, channels: int, expand: int = 2):
        super().__init__()
        half, hidden = channels // 2, channels // 2 * expand
        self.expand = nn.Sequential(nn.Conv2d(half, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.SiLU())
        self.dw = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
                                nn.BatchNorm2d(hidden), nn.GELU())
        self.se = SqueezeExcite(hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, half, 1, bias=False), nn.BatchNorm2d(half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        a = a + self.project(self.se(self.dw(self.expand(a))))
        y = torch.cat([a, b], dim=1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class MyNet(nn.Module):
    def __init__(self, width: int = 32, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.blocks = nn.Sequential(ShuffleBlock(width), ShuffleBlock(width))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 8) -> None:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def build() -> dict:
    data = load_digits_split()
    model = MyNet()
    if CHECKPOINT.exists():
        model.load_state_dict(torch.load(CHECKPOINT))
    else:
        _train(model, data.train_x, data.train_y)
        torch.save(model.state_dict(), CHECKPOINT)
    return {
        "model": model.eval(),
        "example_input": data.val_x[:1].clone(),
        "calib_batches": [data.calib_x[i:i + 64] for i in range(0, len(data.calib_x), 64)],
        "val": (data.val_x, data.val_y),
        "train_batches": [data.train_x[i:i + 64] for i in range(0, len(data.train_x), 64)],
    }
