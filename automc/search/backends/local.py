"""The ``local`` backend: trials in this process, or ``--jobs N`` forked worker processes.

Workers are forked, not spawned: they inherit the scorer the driver already built (model,
proxy, predictor), so they start at once and an in-memory API model works too.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from automc.search.worker import ScorerFactory, WorkerResult, WorkerScorers, score_safely, worker_identity
from automc.types import Candidate

_scorers: WorkerScorers | None = None  # each worker process's scorers, set by _init_worker


def _init_worker(scorers: WorkerScorers, threads: int) -> None:
    global _scorers
    _scorers = scorers
    # A worker must not outlive a driver killed with SIGKILL: it would block on its queue forever.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the driver died before prctl took effect
        os._exit(1)
    import torch

    # forked after the driver ran torch: more intra-op threads than cores would contend
    torch.set_num_threads(threads)


def _score_in_worker(candidate: Candidate, promote: bool) -> WorkerResult:
    assert _scorers is not None
    return score_safely(_scorers, candidate, worker_identity(), promote)


class _InProcess:
    """One trial at a time in this process (``--jobs 1``): ``submit`` scores before it returns."""

    slots = 1

    def __init__(self, scorers: WorkerScorers) -> None:
        self._scorers = scorers

    def submit(self, candidate: Candidate, promote: bool = False) -> Future[WorkerResult]:
        out: Future[WorkerResult] = Future()
        out.set_result(score_safely(self._scorers, candidate, {}, promote))
        return out


class _ForkPool:
    """``slots`` forked processes; a worker that dies fails its trial and the pool is reopened."""

    def __init__(self, scorers: WorkerScorers, slots: int) -> None:
        self.slots = slots
        self._scorers = scorers
        self._lock = threading.Lock()
        self._executor = self._open()

    def _open(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.slots)
        return ProcessPoolExecutor(self.slots, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_init_worker, initargs=(self._scorers, threads))

    def submit(self, candidate: Candidate, promote: bool = False) -> Future[WorkerResult]:
        out: Future[WorkerResult] = Future()
        with self._lock:
            executor = self._executor
            try:
                inner = executor.submit(_score_in_worker, candidate, promote)
            except BrokenProcessPool:
                executor = self._reopen(executor)
                inner = executor.submit(_score_in_worker, candidate, promote)

        def done(f: Future) -> None:
            try:
                out.set_result(f.result())
            except BrokenProcessPool as e:
                with self._lock:
                    self._reopen(executor)
                out.set_result(WorkerResult(None, f"WorkerDied: a worker process exited while scoring ({e})"))
            except Exception as e:  # noqa: BLE001 — e.g. a result that cannot be pickled
                out.set_result(WorkerResult(None, f"{type(e).__name__}: {e}"))

        inner.add_done_callback(done)
        return out

    def _reopen(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        if self._executor is broken:
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._open()
        return self._executor

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class LocalBackend:
    """Trials on this machine: ``jobs`` at a time (1: in this process, as always)."""

    jobs: int = 1
    name: str = "local"

    def connect(self) -> None:
        pass  # nothing to reach; --jobs was checked by make_backend

    @contextmanager
    def pool(self, scorers: WorkerScorers, rebuild: ScorerFactory | None) -> Iterator[_InProcess | _ForkPool]:
        if self.jobs == 1:
            yield _InProcess(scorers)
            return
        pool = _ForkPool(scorers, self.jobs)
        try:
            yield pool
        finally:
            pool.shutdown()

    def close(self) -> None:
        pass
