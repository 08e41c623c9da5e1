"""The ``eval`` proxy: recalibrate BatchNorm, then evaluate on a validation subset."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from automc.accuracy.base import checked_accuracy
from automc.accuracy.bn import recalibrate_bn
from automc.types import Candidate


class EvalProxy:
    """Accuracy after BatchNorm recalibration on ``calib_batches``, by the user's ``evaluate``.

    ``evaluate(model)`` must return a fraction in 0..1 (anything else raises ValueError). The
    model is recalibrated in place; the candidate is not needed.

    Example:
        >>> proxy = EvalProxy(builtin.evaluate, builtin.calib_batches)
        >>> proxy(apply_candidate(model, candidate, x, builtin.calib_batches), candidate)
        0.98
    """

    def __init__(self, evaluate: Callable[[nn.Module], float], calib_batches: Sequence[torch.Tensor]):
        if len(calib_batches) == 0:
            raise ValueError("EvalProxy needs at least one calibration batch")
        self.evaluate = evaluate
        self.calib_batches = tuple(calib_batches)

    def __call__(self, model: nn.Module, candidate: Candidate | None = None) -> float:
        recalibrate_bn(model, self.calib_batches)
        model.eval()
        return checked_accuracy(self.evaluate(model))
