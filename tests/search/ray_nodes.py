"""Real Ray nodes on this machine for tests: ``ray start --block`` processes on loopback, each in
its own process group, stopped by that group (never ``ray stop``, which would stop every Ray
on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# Loopback clusters without Ray's token authentication: nodes and drivers alike, whatever token
# file an earlier `ray.init()` on this machine left in ~/.ray (it would lock the drivers out).
NO_TOKEN = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    """A head and any number of worker nodes, ``num_cpus`` each, on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="r30-", dir="/tmp")  # unix socket paths must stay short
        self._procs: list[subprocess.Popen] = []

    def _start(self, args: list[str], num_cpus: int) -> None:
        cmd = [RAY, "start", *args, "--num-cpus", str(num_cpus), "--node-ip-address", "127.0.0.1",
               "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats", "--block"]
        log = open(Path(self.temp_dir) / f"node{len(self._procs)}.log", "w")
        # workers import automc from this checkout, and the toy scorers from tests/search
        here = Path(__file__).resolve().parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1]), str(here)]), **NO_TOKEN}
        self._procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=env))

    def start_head(self, num_cpus: int) -> None:
        self._start(["--head", "--port", str(self.port), "--temp-dir", self.temp_dir, "--include-dashboard", "false"],
                    num_cpus)
        self.wait_for(nodes=1)

    def add_worker(self, num_cpus: int) -> None:
        self._start(["--address", self.address], num_cpus)

    def wait_for(self, nodes: int, timeout_s: float = 240.0) -> None:
        """Until the cluster lists ``nodes`` alive nodes (asked by a Ray driver in a subprocess)."""
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self._procs):
                raise RuntimeError(f"a ray node exited; logs in {self.temp_dir}")
            try:  # ray.init waits for a head that is not up yet: ask again rather than wait
                out = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                     timeout=90, env={**os.environ, **NO_TOKEN})
            except subprocess.TimeoutExpired:
                continue
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(nodes)]:
                return
            time.sleep(1.0)
        raise TimeoutError(f"the cluster at {self.address} did not reach {nodes} nodes; logs in {self.temp_dir}")

    def stop(self) -> None:
        for p in self._procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(2.0)
        for p in self._procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # what SIGTERM left (raylet workers share the group)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
