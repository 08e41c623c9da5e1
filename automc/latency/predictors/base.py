"""The latency predictor protocol: kernels in, milliseconds out."""

from __future__ import annotations

from typing import Protocol, Sequence

from automc.types import KernelSpec


class LatencyPredictor(Protocol):
    source: str  # "calibrated" or "uncalibrated"

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        """Latency of a model running ``kernels`` (ms)."""
