"""The accuracy-proxy protocol: anything that scores a (compressed) candidate model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import nn

from automc.types import Candidate


@runtime_checkable
class AccuracyProxy(Protocol):
    """Scores a compressed model: returns an accuracy estimate, a fraction in 0..1.

    ``model`` is ``candidate`` applied to the original (the copy made by
    ``compress.apply_candidate``); a proxy may change it (e.g. recalibrate BatchNorm or train
    it), never the uncompressed original. A proxy may score from either argument.
    """

    def __call__(self, model: nn.Module, candidate: Candidate) -> float: ...


def checked_accuracy(value: object) -> float:
    """``value`` as a float when it is an accuracy (a finite fraction in [0, 1]); a ValueError
    naming the value otherwise, so that a broken ``evaluate`` fails loudly instead of ranking."""
    try:
        acc = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"evaluate returned {value!r}, not an accuracy (a fraction in [0, 1])") from None
    if not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        raise ValueError(f"evaluate returned {acc!r}, not an accuracy (a fraction in [0, 1])")
    return acc


@dataclass(frozen=True)
class ProxyInputs:
    """What a proxy may be built from: the uncompressed ``teacher`` (the model searched), an
    example input, the user's ``evaluate`` (fraction 0–1), calibration batches, and unlabelled
    training batches (empty when there are none; the ``finetune`` proxy needs them)."""

    teacher: nn.Module
    example_input: torch.Tensor
    evaluate: Callable[[nn.Module], float]
    calib_batches: tuple[torch.Tensor, ...]
    train_batches: tuple[torch.Tensor, ...] = ()
