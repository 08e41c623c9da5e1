"""Where a search's trials run, by name (``--backend``, ``backend=``): ``local`` (this process,
or ``--jobs N`` forked worker processes) and ``ray`` (actors on a Ray cluster).

Every backend scores candidates only; the driver (the ``automc search`` process) asks the study
for each trial and tells it the outcome, so the run's journal has one writer, the trial count is
exact and a killed driver leaves at most its in-flight trials RUNNING (failed and retried on
resume).
"""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Callable, Protocol

from automc.errors import UserInputError
from automc.search.worker import ScorerFactory, WorkerResult, WorkerScorers
from automc.types import Candidate


class TrialPool(Protocol):
    """Workers that score candidates concurrently, ``slots`` at a time."""

    slots: int

    def submit(self, candidate: Candidate, promote: bool = False) -> Future[WorkerResult]:
        """Score ``candidate`` (``promote``: its accuracy at the promoted fidelity) on a free
        worker (the caller keeps at most ``slots`` in flight)."""
        ...


class SearchBackend(Protocol):
    """One way to run trials. ``connect`` checks the resources before anything is written;
    ``pool`` opens workers for one search; ``close`` releases what ``connect`` took."""

    name: str
    jobs: int

    def connect(self) -> None:
        """Reach and check the resources (a UserInputError, one line, when they are unusable)."""
        ...

    def pool(self, scorers: WorkerScorers, rebuild: ScorerFactory | None) -> AbstractContextManager[TrialPool]:
        """Workers scoring with ``scorers`` (inherited) or ``rebuild()`` (built on the worker),
        or this process itself, one trial at a time."""
        ...

    def close(self) -> None:
        ...


def _local(jobs: int | None, address: str | None) -> SearchBackend:
    from automc.search.backends.local import LocalBackend

    if address is not None:
        raise UserInputError(f"--address {address}: only --backend ray connects to a cluster; drop --address or "
                             "add --backend ray")
    return LocalBackend(jobs or 1)


def _ray(jobs: int | None, address: str | None) -> SearchBackend:
    from automc.search.backends.ray import RayBackend

    return RayBackend(jobs, address)


BACKENDS: dict[str, Callable[[int | None, str | None], SearchBackend]] = {"local": _local, "ray": _ray}


def check_backend_name(name: str) -> None:
    """A UserInputError naming ``--backend`` unless ``name`` is registered."""
    if name not in BACKENDS:
        raise UserInputError(f"--backend: unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")


def check_jobs(jobs: int | None) -> None:
    """A UserInputError naming ``--jobs`` unless it is unset or ≥ 1."""
    if jobs is not None and jobs < 1:
        raise UserInputError(f"--jobs: {jobs} trials at a time cannot run anything; give 1 or more")


def make_backend(name: str, jobs: int | None = None, address: str | None = None) -> SearchBackend:
    """The backend registered as ``name`` (not yet connected); ``jobs`` concurrent trials
    (default: 1 locally, one per CPU of the Ray cluster), ``address`` a Ray cluster.

    >>> make_backend("local", jobs=2).jobs
    2
    """
    check_backend_name(name)
    check_jobs(jobs)
    return BACKENDS[name](jobs, address)
