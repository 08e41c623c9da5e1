"""The device runner for a device behind a TVM RPC tracker (profiles with ``runner: {kind: rpc, ...}``).

The tracker hands out sessions to the RPC servers registered with it under a key (the
profile's ``device_key``). A session uploads a shared library built here (cross-compiled with
the profile's ``cross_compiler`` when it has one), loads it on the device and times it there
with the same time_evaluator settings as a local measurement.
"""

from __future__ import annotations

import functools
import json
import socket
import struct
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from automc.devices.base import DeviceRunner
from automc.devices.target import export_for_device, export_library, tvm_target
from automc.devices.timing import TaskCall, Timing, time_library_tasks, time_vm
from automc.errors import UserInputError
from automc.profiles import HardwareProfile

# The tracker's wire protocol (tvm/rpc/base.py: RPC_TRACKER_MAGIC, TrackerCode.SUMMARY/SUCCESS),
# spoken directly so that a probe needs neither `import tvm` (~4 s) nor tvm.rpc's connect,
# which retries a refused connection for 60 s.
_TRACKER_MAGIC = 0x2F271
_SUMMARY = 6
_SUCCESS = 0


def _recvall(sock: socket.socket, nbytes: int) -> bytes:
    data = b""
    while len(data) < nbytes:
        chunk = sock.recv(nbytes - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the tracker")
        data += chunk
    return data


def _tracker_summary(host: str, port: int, timeout_s: float) -> dict:
    """The tracker's summary (``server_info``: registered servers, ``queue_info``: per-key queues).

    Raises OSError when nothing answers within ``timeout_s`` seconds or the peer is no tracker.
    """
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.settimeout(timeout_s)
        sock.sendall(struct.pack("<i", _TRACKER_MAGIC))
        if struct.unpack("<i", _recvall(sock, 4))[0] != _TRACKER_MAGIC:
            raise ConnectionError("the service there is not a TVM RPC tracker")
        request = json.dumps([_SUMMARY]).encode()
        sock.sendall(struct.pack("<i", len(request)) + request)
        size = struct.unpack("<i", _recvall(sock, 4))[0]
        code, summary = json.loads(_recvall(sock, size).decode())
    if code != _SUCCESS:
        raise ConnectionError(f"the tracker refused a summary request (code {code})")
    return summary


def _fix(profile: HardwareProfile) -> str:
    r = profile.runner
    return (f"start a tracker (`python -m tvm.exec.rpc_tracker --host {r.tracker_host} --port {r.tracker_port}`) and "
            f"on the device an RPC server (`python -m tvm.exec.rpc_server --tracker {r.tracker_host}:{r.tracker_port} "
            f"--key {r.device_key or '<key>'}`), or set runner.tracker_host/tracker_port/device_key in profile "
            f"'{profile.name}'")


def _outputs(vm, *index: int) -> list[np.ndarray]:
    """``main``'s outputs after ``invoke_stateful`` (a tensor or nested tuples) as numpy arrays,
    depth first. Not ``vm.get_outputs``: its recursive closure is a reference cycle that keeps
    the remote objects, hence the RPC session and the device, alive until the next gc pass (the
    next session then waited out the whole session timeout)."""
    arity = vm.module["get_output_arity"]("main", *index)
    if arity == -1:
        return [vm.module["get_output"]("main", *index).numpy()]
    return [a for i in range(arity) for a in _outputs(vm, *index, i)]


class RpcRunner(DeviceRunner):
    """Runs the profile's code on the device its TVM RPC tracker lists under ``device_key``."""

    kind = "rpc"

    @property
    def on_this_host(self) -> bool:
        return False

    @property
    def measurable_here(self) -> bool:
        return False

    def why_not_measurable(self, timeout_s: float = 2.0) -> str:
        """Why the device cannot be reached now, in a few words (empty when it can;
        ``require_measurable`` adds the fix).

        Asks the tracker (waiting at most ``timeout_s`` seconds) whether a server is registered
        under the profile's ``device_key``; opens no session, so it is cheap and side-effect free.
        """
        r = self.profile.runner
        if not r.device_key:
            return "runner.device_key is empty: set it to the key the device's RPC server registers"
        where = f"{r.tracker_host}:{r.tracker_port}"
        try:
            summary = _tracker_summary(r.tracker_host, r.tracker_port, timeout_s)
        except (OSError, ValueError) as exc:  # refused, timed out, unresolvable host, garbled reply
            return f"no TVM RPC tracker answers at {where} ({exc})"
        # servers register as "server:<key>"
        keys = sorted({str(s.get("key", "")).split(":", 1)[-1] for s in summary.get("server_info", [])})
        if r.device_key not in keys:
            return (f"the TVM RPC tracker at {where} has no server with key '{r.device_key}' "
                    f"(it has {keys or 'none'})")
        return ""

    def require_measurable(self, timeout_s: float = 5.0) -> None:
        """Raise a UserInputError naming the profile, the tracker and the fix unless the device
        is reachable (probed for at most ``timeout_s`` seconds)."""
        reason = self.why_not_measurable(timeout_s)
        if reason:
            raise UserInputError(f"--profile {self.profile.name}: cannot measure on its RPC device: {reason}; "
                                 f"{_fix(self.profile)}")

    @property
    def measured_on(self) -> str:
        # the device key, so its measurements are reused from any driving host
        return f"rpc device '{self.profile.runner.device_key}'"

    @property
    def stored_measurements_apply(self) -> bool:
        return True  # the device's own, valid whether or not it is reachable now

    def unmeasurable_note(self, why_not: str) -> str:
        return (f"profile {self.profile.name}: its RPC device cannot be reached ({why_not}): latencies "
                "come from its stored measurements, or are roofline estimates if it has none")

    @property
    def via(self) -> str:
        r = self.profile.runner
        return f" (RPC: {r.tracker_host}:{r.tracker_port}, key {r.device_key})"

    def open_session(self, timeout_s: float = 5.0):
        """A ``tvm.rpc.RPCSession`` on the device, requested from its tracker.

        The session lasts at most ``runner.session_timeout_s`` seconds (the server ends it then).
        Raises a UserInputError when the tracker or the device is unreachable (probed for at most
        ``timeout_s`` seconds); if every server under the key is busy, waits for one to be free.
        """
        self.require_measurable(timeout_s)
        from tvm import rpc

        r = self.profile.runner
        try:
            return rpc.connect_tracker(r.tracker_host, r.tracker_port).request(
                r.device_key, session_timeout=r.session_timeout_s, max_retry=2)
        except (OSError, RuntimeError) as exc:  # the server vanished between the probe and the request
            raise UserInputError(f"--profile {self.profile.name}: the TVM RPC tracker at {r.tracker_host}:"
                                 f"{r.tracker_port} gave no session for key '{r.device_key}' ({exc}); "
                                 f"{_fix(self.profile)}") from exc

    def run_library(self, library: str | Path,
                    input_arrays: list[np.ndarray]) -> tuple[list[np.ndarray], Timing]:
        """Upload the library, run its ``main`` once (warm-up; the outputs are returned) and time
        it there: ``tuning.repeat`` runs of at least ``tuning.min_repeat_ms`` ms each."""
        import tvm
        from tvm import relax

        profile = self.profile
        session = self.open_session()
        # unique: the server's working directory may outlive this session
        name = f"automc-{uuid.uuid4().hex[:12]}{Path(library).suffix}"
        session.upload(str(library), name)
        try:
            rexec = session.load_module(name)
            dev = session.device(int(tvm_target(profile).get_target_device_type()), 0)
            # a GPU VM also needs its host CPU: the device's (left out, relax would add this host's)
            vm = relax.VirtualMachine(rexec, [dev] if profile.target_kind == "llvm" else [dev, session.cpu()])
            args = [tvm.runtime.tensor(a, dev) for a in input_arrays]
            # The stateful API, because a VM function's result cannot come back over RPC as a
            # return value (it arrives as an opaque RPCObjectRef); its tensors can be fetched.
            vm.set_input("main", *args)
            vm.invoke_stateful("main")  # warm-up, as locally
            outputs = _outputs(vm)
            return outputs, time_vm(vm, dev, args, profile)
        finally:
            session.remove(name)

    def time_executable(self, executable, input_arrays: list[np.ndarray]) -> Timing:
        """Exported with the profile's cross compiler, uploaded, then timed as ``run_library`` does."""
        with tempfile.TemporaryDirectory(prefix="automc-rpc-") as tmp:
            library = export_library(executable, Path(tmp) / "kernel.so", self.profile)
            return self.run_library(library, input_arrays)[1]

    def time_tasks(self, library, calls: list[TaskCall]) -> list[Timing]:
        session = self.open_session()
        name = f"automc-{uuid.uuid4().hex[:12]}.so"
        with tempfile.TemporaryDirectory(prefix="automc-rpc-") as tmp:
            session.upload(str(export_library(library, Path(tmp) / "kernels.so", self.profile)), name)
        try:
            dev = session.device(int(tvm_target(self.profile).get_target_device_type()), 0)
            return time_library_tasks(session.load_module(name), dev, calls, self.profile)
        finally:
            session.remove(name)

    def tuning_workers(self, ms, initializer: Callable[[], None]):
        """Libraries exported for the device here, timed on it through its tracker."""
        evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20)
        # Fail here with the fix rather than let every trial of the session fail on its own.
        self.require_measurable()
        r = self.profile.runner
        rpc_config = ms.runner.RPCConfig(tracker_host=r.tracker_host, tracker_port=r.tracker_port,
                                         tracker_key=r.device_key, session_timeout_sec=r.session_timeout_s)
        export = functools.partial(export_for_device, cross_compiler=self.profile.cross_compiler)
        return (ms.builder.LocalBuilder(max_workers=1, timeout_sec=60, f_export=export, initializer=initializer),
                ms.runner.RPCRunner(rpc_config, evaluator, max_workers=1, initializer=initializer))
