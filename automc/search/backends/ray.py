"""The ``ray`` backend: one Ray actor per concurrent trial, each building the run's scorer once.

The driver keeps the study (sampler and journal) and asks/tells it; actors only score. So no
node needs the run directory on a shared filesystem (only ``run.json``'s model source, the
profile and the measurement store), and a search started on Ray resumes in-process and back.
"""

from __future__ import annotations

import logging
import queue
import socket
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from automc.errors import UserInputError
from automc.search.worker import ScorerFactory, WorkerResult, WorkerScorers, score_safely, worker_identity
from automc.types import Candidate

CPUS_PER_TRIAL = 1
CONNECT_TIMEOUT_S = 3.0
START_HEAD = "start a head with `ray start --head --port 6379` (workers: `ray start --address HEAD:6379`)"


class _ScoringActor:
    """Builds the scorers on its first candidate (their failure then fails each trial, with the
    reason) and reuses them for every later one."""

    def __init__(self, rebuild: ScorerFactory) -> None:
        self._rebuild = rebuild
        self._scorers: WorkerScorers | None = None
        self._build_error: str | None = None

    def score(self, candidate: Candidate, promote: bool) -> WorkerResult:
        import ray

        identity = worker_identity(node=ray.get_runtime_context().get_node_id())
        if self._scorers is None and self._build_error is None:
            try:
                self._scorers = self._rebuild()
            except Exception as e:  # noqa: BLE001 — reported with every trial this worker takes
                self._build_error = f"WorkerSetupError: {type(e).__name__}: {e}"
        if self._scorers is None:
            return WorkerResult(None, self._build_error, identity)
        return score_safely(self._scorers, candidate, identity, promote)


def check_reachable(address: str) -> None:
    """A UserInputError within seconds when nothing listens at ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"--address {address}: give HOST:PORT of a Ray head (or 'auto'); {START_HEAD}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise UserInputError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}); "
                             f"{START_HEAD}") from None


class _ActorPool:
    def __init__(self, actors: list[Any]) -> None:
        self.slots = len(actors)
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for actor in actors:
            self._free.put(actor)

    def submit(self, candidate: Candidate, promote: bool = False) -> Future[WorkerResult]:
        actor = self._free.get(timeout=5.0)  # the caller keeps at most `slots` in flight
        out: Future[WorkerResult] = Future()
        inner = actor.score.remote(candidate, promote).future()

        def done(f: Future) -> None:
            self._free.put(actor)
            try:
                out.set_result(f.result())
            except Exception as e:  # noqa: BLE001 — the actor or its node died mid-trial
                out.set_result(WorkerResult(None, f"WorkerDied: {type(e).__name__}: {str(e).splitlines()[0]}"))

        inner.add_done_callback(done)
        return out


@dataclass
class RayBackend:
    """Trials on a Ray cluster: ``address`` (``auto`` or ``HOST:PORT``; ``None`` starts Ray on this
    machine), ``jobs`` concurrent trials (default: one per CPU of the cluster)."""

    requested_jobs: int | None = None
    address: str | None = None
    name: str = "ray"
    jobs: int = 0
    _started: bool = field(default=False, repr=False)

    def connect(self) -> None:
        import ray

        if self.address not in (None, "auto"):
            check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            if self.address is None:
                kwargs.update(num_cpus=(self.requested_jobs or 1) * CPUS_PER_TRIAL, include_dashboard=False)
            try:
                ray.init(address=self.address, **kwargs)
            except (ConnectionError, RuntimeError, TimeoutError) as e:
                where = self.address or "this machine"
                raise UserInputError(f"--address {where}: cannot connect to Ray ({str(e).splitlines()[0]}); "
                                     f"{START_HEAD}") from None
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        jobs = self.requested_jobs or cpus // CPUS_PER_TRIAL
        if jobs < 1 or jobs * CPUS_PER_TRIAL > cpus:
            where = self.address or "started here"
            self.close()
            raise UserInputError(f"--jobs: the Ray cluster ({where}) has {cpus} CPUs; {jobs or 1} trials at "
                                 f"{CPUS_PER_TRIAL} CPU each need {max(jobs, 1) * CPUS_PER_TRIAL}; add nodes "
                                 "(`ray start --address HEAD:PORT --num-cpus N`) or lower --jobs")
        self.jobs = jobs

    @contextmanager
    def pool(self, scorers: WorkerScorers, rebuild: ScorerFactory | None) -> Iterator[_ActorPool]:
        import ray

        if rebuild is None:
            raise UserInputError("--backend ray: the model lives in this process only (an API model); give "
                                 "automc a built-in, a factory file.py:function or a .pt2 so Ray workers can build it")
        cls = ray.remote(num_cpus=CPUS_PER_TRIAL, max_restarts=1, max_task_retries=0)(_ScoringActor)
        actors = [cls.options(scheduling_strategy="SPREAD").remote(rebuild) for _ in range(self.jobs)]
        try:
            yield _ActorPool(actors)
        finally:
            for actor in actors:
                ray.kill(actor)

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False
