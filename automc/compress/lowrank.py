"""Low-rank factorization by truncated SVD: one Linear / 1×1 conv becomes two thinner ones."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from automc.compress._module_paths import get_module, set_module


def target_rank(layer: nn.Module, fraction: float) -> int:
    """Rank kept for ``fraction`` of full rank min(in, out), rounded, at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"rank fraction must be in (0, 1], got {fraction}")
    w = layer.weight
    full = min(w.shape[0], w.shape[1])
    return max(1, int(round(fraction * full)))


def is_factorizable(layer: nn.Module) -> bool:
    """Linear, or 1×1 conv with groups=1 (both are a matrix product per position)."""
    if isinstance(layer, nn.Linear):
        return True
    return (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1
            and layer.dilation == (1, 1) and layer.padding_mode == "zeros")


def saves_params(in_features: int, out_features: int, rank: int) -> bool:
    return rank * (in_features + out_features) < in_features * out_features


def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an [out, in] matrix into A [rank, in] and B [out, rank] with B @ A ≈ weight.

    The singular values are split evenly (√S on each side) so both factors have a similar
    range, which keeps per-channel weight quantization of each factor accurate.
    """
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = root[:, None] * vh[:rank]
    second = u[:, :rank] * root[None, :]
    return first.to(weight.dtype), second.to(weight.dtype)


def factorize(layer: nn.Module, rank: int) -> nn.Sequential:
    """Two-layer replacement of ``layer`` of rank ``rank``; the bias goes on the second factor."""
    if not is_factorizable(layer):
        raise ValueError(f"cannot factorize {layer}: only Linear and 1×1 groups=1 Conv2d")
    w = layer.weight.detach()
    out_f, in_f = w.shape[0], w.shape[1]
    first_w, second_w = svd_factors(w.reshape(out_f, in_f), rank)
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first = nn.Linear(in_f, rank, bias=False)
        second = nn.Linear(rank, out_f, bias=has_bias)
    else:
        # stride and padding belong to the first factor: it sees the input's spatial grid
        first = nn.Conv2d(in_f, rank, 1, stride=layer.stride, padding=layer.padding, bias=False)
        second = nn.Conv2d(rank, out_f, 1, bias=has_bias)
        first_w, second_w = first_w[:, :, None, None], second_w[:, :, None, None]
    with torch.no_grad():
        first.weight.copy_(first_w)
        second.weight.copy_(second_w)
        if has_bias:
            second.bias.copy_(layer.bias.detach())
    pair = nn.Sequential(first, second)
    return pair.to(device=w.device, dtype=w.dtype)


def apply_lowrank(model: nn.Module, fractions: Mapping[str, float]) -> list[str]:
    """Factorize, in place, each layer named in ``fractions`` (rank fraction < 1).

    A layer is left alone when the factorization would not reduce its parameter count.
    Names that no longer exist are ignored. Returns the names actually factorized.
    """
    done = []
    for name, fraction in fractions.items():
        if fraction >= 1.0:
            continue
        layer = get_module(model, name)
        if layer is None:
            continue
        if not is_factorizable(layer):
            raise ValueError(f"layer '{name}': low-rank applies to Linear and 1×1 Conv2d only, got {layer}")
        rank = target_rank(layer, fraction)
        if not saves_params(layer.weight.shape[1], layer.weight.shape[0], rank):
            continue
        set_module(model, name, factorize(layer, rank))
        done.append(name)
    return done
