"""Validation: compile and run whole compressed models, compare measured with predicted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy.build import open_database
from automc.latency.calibrate import measure_model, require_measurable
from automc.profiles import HardwareProfile
from automc.types import Candidate


@dataclass(frozen=True)
class ValidationRow:
    trial: int
    predicted_ms: float
    measured_ms: float
    spread: float

    @property
    def error(self) -> float:
        """(predicted − measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class ValidationSummary:
    rows: tuple[ValidationRow, ...]

    @property
    def within_10(self) -> float:
        return float(np.mean([abs(r.error) <= 0.10 for r in self.rows])) if self.rows else float("nan")

    @property
    def within_5(self) -> float:
        return float(np.mean([abs(r.error) <= 0.05 for r in self.rows])) if self.rows else float("nan")

    @property
    def rmspe(self) -> float:
        return float(np.sqrt(np.mean([r.error**2 for r in self.rows]))) if self.rows else float("nan")

    @property
    def kendall_tau(self) -> float:
        from scipy.stats import kendalltau

        if len(self.rows) < 2:
            return float("nan")
        return float(kendalltau([r.predicted_ms for r in self.rows], [r.measured_ms for r in self.rows]).statistic)


def validate_candidates(model: nn.Module, example_input: torch.Tensor, calib_batches: Sequence[torch.Tensor],
                        candidates: dict[int, tuple[Candidate, float]], profile: HardwareProfile) -> ValidationSummary:
    """Measure each ``trial → (candidate, predicted ms)`` end to end on this host."""
    require_measurable(profile)
    database = open_database(profile)
    rows = []
    for trial, (candidate, predicted) in candidates.items():
        compressed = apply_candidate(model, candidate, example_input, calib_batches)
        recalibrate_bn(compressed, calib_batches)
        whole = measure_model(compressed.eval(), example_input, profile, database).whole
        rows.append(ValidationRow(trial, predicted, whole.latency_ms, whole.spread))
    return ValidationSummary(tuple(rows))
