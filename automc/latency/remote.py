"""Measure on a device behind a TVM RPC tracker (profiles with ``runner: {kind: rpc, ...}``).

The tracker hands out sessions to the RPC servers registered with it under a key (the
profile's ``device_key``). A session uploads a shared library built here (cross-compiled with
the profile's ``cross_compiler`` when it has one), loads it on the device and times it there
with the same time_evaluator settings as a local measurement.
"""

from __future__ import annotations

import json
import socket
import struct
import tempfile
import uuid
from pathlib import Path

import numpy as np

from automc.errors import UserInputError
from automc.latency.measure import Timing, time_library_tasks, time_vm
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


def unreachable_reason(profile: HardwareProfile, timeout_s: float = 2.0) -> str:
    """Why the profile's RPC device cannot be reached now, in a few words (empty when it can;
    ``require_device`` adds the fix).

    Asks the tracker (waiting at most ``timeout_s`` seconds) whether a server is registered
    under the profile's ``device_key``; opens no session, so it is cheap and side-effect free.
    """
    r = profile.runner
    if r.kind != "rpc":
        return f"profile '{profile.name}' has a {r.kind} runner, not rpc"
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


def device_reachable(profile: HardwareProfile, timeout_s: float = 2.0) -> bool:
    """True when the profile's tracker answers within ``timeout_s`` seconds and lists a server
    under its ``device_key`` (no session is opened)."""
    return profile.runner.kind == "rpc" and not unreachable_reason(profile, timeout_s)


def require_device(profile: HardwareProfile, timeout_s: float = 5.0) -> None:
    """Raise a UserInputError naming the profile, the tracker and the fix unless the profile's
    RPC device is reachable (probed for at most ``timeout_s`` seconds)."""
    reason = unreachable_reason(profile, timeout_s)
    if reason:
        raise UserInputError(f"--profile {profile.name}: cannot measure on its RPC device: {reason}; {_fix(profile)}")


def open_session(profile: HardwareProfile, timeout_s: float = 5.0):
    """A ``tvm.rpc.RPCSession`` on the profile's device, requested from its tracker.

    The session lasts at most ``runner.session_timeout_s`` seconds (the server ends it then).
    Raises a UserInputError when the tracker or the device is unreachable (probed for at most
    ``timeout_s`` seconds); if every server under the key is busy, waits for one to be free.
    """
    require_device(profile, timeout_s)
    from tvm import rpc

    r = profile.runner
    try:
        return rpc.connect_tracker(r.tracker_host, r.tracker_port).request(
            r.device_key, session_timeout=r.session_timeout_s, max_retry=2)
    except (OSError, RuntimeError) as exc:  # the server vanished between the probe and the request
        raise UserInputError(f"--profile {profile.name}: the TVM RPC tracker at {r.tracker_host}:{r.tracker_port} "
                             f"gave no session for key '{r.device_key}' ({exc}); {_fix(profile)}") from exc


def _outputs(vm, *index: int) -> list[np.ndarray]:
    """``main``'s outputs after ``invoke_stateful`` (a tensor or nested tuples) as numpy arrays,
    depth first. Not ``vm.get_outputs``: its recursive closure is a reference cycle that keeps
    the remote objects, hence the RPC session and the device, alive until the next gc pass (the
    next session then waited out the whole session timeout)."""
    arity = vm.module["get_output_arity"]("main", *index)
    if arity == -1:
        return [vm.module["get_output"]("main", *index).numpy()]
    return [a for i in range(arity) for a in _outputs(vm, *index, i)]


def run_on_device(library: str | Path, input_arrays: list[np.ndarray],
                  profile: HardwareProfile) -> tuple[list[np.ndarray], Timing]:
    """Upload an exported library (see ``automc.deploy.build.export_library``) to the profile's
    device, run its ``main`` once on ``input_arrays`` (warm-up; the outputs are returned) and
    time it there: ``tuning.repeat`` runs of at least ``tuning.min_repeat_ms`` ms each.

    Returns (outputs as numpy arrays, Timing in ms).
    """
    import tvm
    from tvm import relax

    from automc.deploy.build import tvm_target

    session = open_session(profile)
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


def time_remote(executable, input_arrays: list[np.ndarray], profile: HardwareProfile) -> Timing:
    """Time ``main`` of a compiled Relax executable on the profile's RPC device (ms): exported
    with the profile's cross compiler, uploaded, then timed as ``run_on_device`` does."""
    from automc.deploy.build import export_library

    with tempfile.TemporaryDirectory(prefix="automc-rpc-") as tmp:
        library = export_library(executable, Path(tmp) / "kernel.so", profile)
        return run_on_device(library, input_arrays, profile)[1]


def time_tasks_remote(library, calls: list, profile: HardwareProfile) -> list[Timing]:
    """Time each fused task of a compiled model's kernel library (``executable.mod.imports[0]``)
    on the profile's RPC device, as ``measure.time_library_tasks`` does locally."""
    from automc.deploy.build import export_library, tvm_target

    session = open_session(profile)
    name = f"automc-{uuid.uuid4().hex[:12]}.so"
    with tempfile.TemporaryDirectory(prefix="automc-rpc-") as tmp:
        session.upload(str(export_library(library, Path(tmp) / "kernels.so", profile)), name)
    try:
        dev = session.device(int(tvm_target(profile).get_target_device_type()), 0)
        return time_library_tasks(session.load_module(name), dev, calls, profile)
    finally:
        session.remove(name)
