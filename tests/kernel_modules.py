"""Test helper: one KernelSpec built as a standalone Relax module through the deploy lowering."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from automc.deploy.lower import IntegerLayer
from automc.deploy.relax_lowering import relax_from_deploy
from automc.types import KernelSpec

_ACTS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def kernel_input(spec: KernelSpec) -> np.ndarray:
    """A random input of the kernel's shape (float32; the integer path quantizes it)."""
    shape = (spec.batch, spec.in_channels) if spec.op == "dense" else (spec.batch, spec.in_channels, spec.height, spec.width)
    return np.random.default_rng(0).uniform(0, 1, size=shape).astype(np.float32)


def kernel_module(spec: KernelSpec):
    """The Relax module that runs exactly this kernel, lowered like a whole model's layer."""
    torch.manual_seed(0)
    if spec.op == "dense":
        layer: nn.Module = nn.Linear(spec.in_channels, spec.out_channels)
    else:
        layer = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel_size, spec.stride,
                          spec.padding, groups=spec.groups, bias=True)
    mods = [layer] + ([_ACTS[spec.act]()] if spec.act in _ACTS else [])
    model = nn.Sequential(*mods).eval()
    integer = {"0": IntegerLayer(8, 8, 1.0 / 255, False)} if spec.dtype == "int8" else {}
    return relax_from_deploy(model, integer, torch.from_numpy(kernel_input(spec)))
