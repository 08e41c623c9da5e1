"""The device runner: where a profile's compiled code runs and is timed, behind one interface.

Everything above this package asks its profile's runner (``device_runner(profile)``) rather
than branching on ``profile.runner.kind``; a new kind of device is one more implementation.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from automc.devices.timing import TaskCall, Timing
from automc.profiles import HardwareProfile


@dataclass(frozen=True)
class DeviceRunner(abc.ABC):
    """Runs and times compiled code for ``profile`` on its device (not the search's runner, nor
    MetaSchedule's: this one is the device's)."""

    profile: HardwareProfile
    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def on_this_host(self) -> bool:
        """True when the code runs on this host's CPU (so other runtimes can be timed beside it)."""

    @property
    @abc.abstractmethod
    def measurable_here(self) -> bool:
        """True when this host runs and times the profile's kernels itself. No I/O (cheap to
        call often); see ``measurable`` for a remote device."""

    @abc.abstractmethod
    def why_not_measurable(self, timeout_s: float = 2.0) -> str:
        """One line saying why the profile's kernels cannot be measured now (empty when they
        can), waiting at most ``timeout_s`` seconds for a remote device to answer."""

    def measurable(self, timeout_s: float = 2.0) -> bool:
        """True when kernels can be measured now, here or on the remote device."""
        return not self.why_not_measurable(timeout_s)

    @abc.abstractmethod
    def require_measurable(self) -> None:
        """Raise a UserInputError naming the profile and the fix unless kernels can be measured now."""

    @property
    @abc.abstractmethod
    def measured_on(self) -> str:
        """Which device the profile's measurements come from, as the store records it."""

    @property
    @abc.abstractmethod
    def stored_measurements_apply(self) -> bool:
        """True when measurements stored for the profile describe the device this runner
        times on, whether or not it can be reached now."""

    @abc.abstractmethod
    def unmeasurable_note(self, why_not: str) -> str:
        """One line for users when kernels cannot be measured now (``why_not``): where the
        latencies come from instead."""

    @property
    def via(self) -> str:
        """How the device is reached, for a listing (empty for this host)."""
        return ""

    @abc.abstractmethod
    def time_executable(self, executable, input_arrays: list[np.ndarray]) -> Timing:
        """Time ``main`` of a compiled Relax executable on the device (ms)."""

    @abc.abstractmethod
    def run_library(self, library: str | Path,
                    input_arrays: list[np.ndarray]) -> tuple[list[np.ndarray], Timing]:
        """Load an exported library on the device, run ``main`` once on ``input_arrays`` and time
        it. Returns (outputs as numpy arrays, Timing in ms)."""

    @abc.abstractmethod
    def time_tasks(self, library, calls: list[TaskCall]) -> list[Timing]:
        """Time each fused task of a compiled model's kernel library (``executable.mod.imports[0]``)
        on the device; every call must be one of its functions."""

    @abc.abstractmethod
    def tuning_workers(self, ms, initializer: Callable[[], None]):
        """MetaSchedule's (builder, trial runner) that build and time tuning trials for the device;
        ``ms`` is the imported ``meta_schedule`` module, ``initializer`` runs in each worker.
        (MetaSchedule calls its timer a runner; in automc a runner is this device runner.)"""
