"""Devices: where a profile's compiled code runs and is timed (this host, or a device behind a
TVM RPC tracker), the profile's TVM target, and libraries exported for it."""

from automc.devices.base import DeviceRunner
from automc.devices.local import LocalRunner, use_profile_threads
from automc.devices.registry import device_runner, register_device_runner
from automc.devices.rpc import RpcRunner
from automc.devices.target import export_library, tvm_target
from automc.devices.timing import TaskCall, Timing, median_timing

__all__ = ["DeviceRunner", "LocalRunner", "RpcRunner", "TaskCall", "Timing", "device_runner", "export_library",
           "median_timing", "register_device_runner", "tvm_target", "use_profile_threads"]
