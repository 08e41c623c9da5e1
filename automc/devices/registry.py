"""Device runners chosen by name: the profile's ``runner.kind``."""

from __future__ import annotations

from typing import Callable

from automc.devices.base import DeviceRunner
from automc.devices.local import LocalRunner
from automc.devices.rpc import RpcRunner
from automc.profiles import HardwareProfile

_RUNNERS: dict[str, Callable[[HardwareProfile], DeviceRunner]] = {"local": LocalRunner, "rpc": RpcRunner}


def register_device_runner(kind: str, factory: Callable[[HardwareProfile], DeviceRunner]) -> None:
    """Make ``factory`` the device runner of profiles whose ``runner.kind`` is ``kind``."""
    _RUNNERS[kind] = factory


def device_runner(profile: HardwareProfile) -> DeviceRunner:
    """The device runner of ``profile`` (its ``runner.kind``).

    >>> device_runner(load_profile("x86-avx2")).kind
    'local'
    """
    return _RUNNERS[profile.runner.kind](profile)
