"""The roofline predictor: the labelled fallback for profiles not calibrated on this host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from automc.profiles import HardwareProfile
from automc.types import KernelSpec


@dataclass
class RooflinePredictor:
    """max(compute, memory) time per kernel from the profile's declared peaks. Uncalibrated."""

    profile: HardwareProfile
    source: str = "uncalibrated"

    def kernel_ms(self, spec: KernelSpec) -> float:
        peak = self.profile.peak_gops.get(spec.dtype) or self.profile.peak_gops["float32"]
        compute = 2 * spec.macs / (peak * 1e9)
        memory = spec.bytes_moved / (self.profile.mem_bandwidth_gbs * 1e9)
        return max(compute, memory) * 1e3

    def predict(self, kernels: Sequence[KernelSpec]) -> float:
        return sum(self.kernel_ms(k) for k in kernels)
