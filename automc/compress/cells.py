"""Cell choices for inverted-residual style blocks: keep, skip (identity) or half the width.

A block is any module with ``expand``, ``dw``, ``project`` and ``use_res`` attributes (the same
test as :func:`automc.model.introspect.is_cell`), so user models built that way qualify too.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch_pruning as tp
from torch import nn

from automc.compress._module_paths import set_module
from automc.compress.prune import build_graph, remove_out_channels
from automc.model.introspect import is_cell

CELL_CHOICES = ("keep", "skip", "half")


def find_cells(model: nn.Module) -> dict[str, bool]:
    """Map each block's module path to whether it can be skipped (it has a residual add).

    Example:
        >>> find_cells(DemoCNN())["blocks.0"]
        True
    """
    return {name: bool(m.use_res) for name, m in model.named_modules() if name and is_cell(m)}


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return module if isinstance(module, nn.Conv2d) else next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _first_bn(module: nn.Module) -> nn.BatchNorm2d | None:
    return next((m for m in module.modules() if isinstance(m, nn.BatchNorm2d)), None)


def hidden_importance(block: nn.Module) -> torch.Tensor:
    """Importance of each hidden channel: L1 of the expand conv's weights × |BN gamma|."""
    conv = _first_conv(block.expand)
    score = conv.weight.detach().abs().flatten(1).sum(1)
    bn = _first_bn(block.expand)
    if bn is not None and bn.affine:
        score = score * bn.weight.detach().abs()
    return score


def halve_block(graph: tp.DependencyGraph, block: nn.Module) -> None:
    """Halve the block's expand ratio in place, keeping the most important hidden channels."""
    conv = _first_conv(block.expand)
    n_remove = conv.out_channels // 2
    order = torch.argsort(hidden_importance(block))
    remove_out_channels(graph, conv, order[:n_remove].tolist())


def apply_cells(model: nn.Module, cells: Mapping[str, str], example_input: torch.Tensor) -> tp.DependencyGraph | None:
    """Apply cell choices in place; return the dependency graph built on the result (if any).

    Skips go first so that the graph (needed for "half") is traced once on the final structure.
    Raises ValueError for an unknown block, an unknown choice, or skipping a non-residual block.
    """
    blocks = find_cells(model)
    for block, choice in cells.items():
        if choice not in CELL_CHOICES:
            raise ValueError(f"block '{block}': unknown cell choice '{choice}'; choose one of {CELL_CHOICES}")
        if block not in blocks:
            raise ValueError(f"block '{block}' is not a cell of this model; cells are {sorted(blocks)}")
        if choice == "skip" and not blocks[block]:
            raise ValueError(f"block '{block}' has no residual connection, so it cannot be skipped")
    for block, choice in cells.items():
        if choice == "skip":
            set_module(model, block, nn.Identity())
    halves = [b for b, c in cells.items() if c == "half"]
    if not halves:
        return None
    graph = build_graph(model, example_input)
    named = dict(model.named_modules())
    for block in halves:
        if block in named:  # gone only if nested in a skipped block
            halve_block(graph, named[block])
    return graph
