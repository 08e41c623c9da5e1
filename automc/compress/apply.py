"""apply_candidate: a Candidate turned into a really compressed copy of the model."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from automc.compress.cells import apply_cells
from automc.compress.lowrank import apply_lowrank
from automc.compress.prune import apply_pruning
from automc.compress.quantize import apply_quantization, calibrate_ranges
from automc.types import Candidate


def _check_names(model: nn.Module, candidate: Candidate) -> None:
    layers = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    unknown = sorted(set(candidate.layers) - layers)
    if unknown:
        raise ValueError(f"candidate names layers that are not Conv2d/Linear in the model: {unknown}")


def _original_name(name: str) -> list[str]:
    """Where a compressed parameter came from: unwrap QuantizedLayer, then a low-rank pair."""
    plain = name.replace(".inner.", ".")
    path, _, leaf = plain.rpartition(".")
    parent, _, last = path.rpartition(".")
    return [plain, f"{parent}.{leaf}"] if last in ("0", "1") else [plain]


def _restore_requires_grad(model: nn.Module, flags: dict[str, bool]) -> None:
    # torch-pruning and the factorization create fresh Parameters (requires_grad=True);
    # a frozen layer of the caller's model must stay frozen in its compressed copy
    for name, param in model.named_parameters():
        flag = next((flags[n] for n in _original_name(name) if n in flags), None)
        if flag is not None:
            param.requires_grad_(flag)


def apply_candidate(model: nn.Module, candidate: Candidate, example_input: torch.Tensor,
                    calib_batches: Sequence[torch.Tensor]) -> nn.Module:
    """Return a compressed deep copy of ``model`` (eval mode); ``model`` itself is not changed.

    Order: cells → structured pruning → low-rank → quantization (activation ranges calibrated
    on ``calib_batches``). Layer names are the original module paths (as in the LayerTable);
    a name inside a skipped block is ignored.

    Example:
        >>> c = Candidate(layers={"blocks.1.expand.0": LayerChoice(prune=0.5, w_bits=8, a_bits=8)},
        ...               cells={"blocks.0": "skip"})
        >>> small = apply_candidate(model, c, example_input, calib_batches)
    """
    _check_names(model, candidate)
    out = copy.deepcopy(model).eval()
    flags = {n: p.requires_grad for n, p in out.named_parameters()}
    graph = apply_cells(out, candidate.cells, example_input)
    choices = candidate.layers
    apply_pruning(out, {n: c.prune for n, c in choices.items()}, example_input, graph=graph)
    apply_lowrank(out, {n: c.rank for n, c in choices.items()})
    apply_quantization(out, {n: (c.w_bits, c.a_bits) for n, c in choices.items() if c.quantized})
    calibrate_ranges(out, calib_batches)
    _restore_requires_grad(out, flags)
    return out.eval()
