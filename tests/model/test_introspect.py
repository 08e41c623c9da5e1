"""introspect: which layers a search can compress, and which it leaves as they are (and why)."""

from __future__ import annotations

import torch
from torch import nn

from automc.model.introspect import introspect


class _Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Conv1d(3, 3, 1)  # a kernel automc does not compress
        self.conv = nn.Conv2d(3, 8, 3)
        self.unused = nn.Linear(8, 8)  # never called on the example input
        self.fc = nn.Linear(8, 2)
        self.norm = nn.LayerNorm(8)  # a vector weight: nothing to compress

    def forward(self, x):
        return self.fc(self.norm(self.conv(x).mean((2, 3))))


def test_layers_left_as_they_are_are_named_with_why():
    table = introspect(_Mixed(), torch.randn(1, 3, 8, 8))
    assert table.names == ("conv", "fc")
    assert dict(table.left_as_is) == {"mix": "Conv1d: automc compresses Conv2d and Linear layers only",
                                      "unused": "not called on the example input"}


def test_the_demo_model_has_nothing_left_as_is(demo):
    assert introspect(demo.model, demo.example_input).left_as_is == ()
