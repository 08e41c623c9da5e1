"""The search driver: an Optuna multi-objective study over a resolved space.

Objectives are accuracy (fraction, ↑), latency (ms, ↓) and size (bytes, ↓). The study lives in
the run directory's journal file, so a killed search resumes where it stopped; the uniform
baselines run first so that every front is drawn against them; a candidate whose scoring raises
is recorded as a failed trial with its reason and the search goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from automc.search.fidelity import FIDELITY_ATTRS, Promotion, record_promoted, wants_promotion
from automc.search.pareto import DIRECTIONS, OBJECTIVES, STUDY_NAME, journal_storage
from automc.search.backends import SearchBackend, TrialPool
from automc.search.backends.local import LocalBackend
from automc.search.progress import SearchProgressBar
from automc.search.results import write_results
from automc.search.samplers import DEFAULT_SAMPLER, check_sampler_name, make_sampler
from automc.search.seeds import (SINGLE_ATTRS, Fp32Scores, SingleChange, baseline_params, combination_params,
                                 single_change_of, single_change_params)
from automc.search.space import ResolvedSpace, candidate_from_params, param_options
from automc.search.worker import ScorerFactory, WorkerResult, WorkerScorers
from automc.types import Candidate, Evaluation

# User attrs the driver writes itself; score extras with these names are stored as "extras.<name>".
RESERVED_ATTRS = frozenset({"candidate", "baseline", "seed", "single_change", "probe", "latency_source", "error",
                            "constraint", "worker", "retry_of", "duplicate_of", *FIDELITY_ATTRS})

Score = Callable[[Candidate], Evaluation]
LOCK_FILE = ".search.lock"  # in a run directory: held shared by every search running on it
OPEN_LOCK = ".open.lock"  # held by the one search opening the study
ASK_LOCK = ".ask.lock"  # held by the one search counting the trials and asking for the next


@dataclass(frozen=True)
class SearchSettings:
    """How to search: ``n_trials`` in total (a resumed run only adds the missing ones),
    ``sampler`` a name in ``samplers.SAMPLERS``, ``seed`` for the sampler, ``progress`` to draw a bar,
    ``sensitivity_seeds`` to try single choices and enqueue their combinations (see
    :mod:`automc.search.seeds`; they take at most half of ``n_trials``)."""

    n_trials: int
    sampler: str = DEFAULT_SAMPLER
    seed: int = 0
    progress: bool = True
    sensitivity_seeds: bool = True


def suggest_params(space: ResolvedSpace, trial: optuna.Trial) -> dict[str, Any]:
    """Ask ``trial`` for every choice of ``space`` that has more than one option (names as in
    :func:`~automc.search.space.param_options`, e.g. ``{'conv1.bits': '8/8', 'blk1.cell': 'keep'}``)."""
    return {name: trial.suggest_categorical(name, options) for name, options in param_options(space).items()}


def run_search(space: ResolvedSpace, score: Score, run_dir: Path, settings: SearchSettings,
               promotion: Promotion | None = None, backend: SearchBackend | None = None,
               rebuild: ScorerFactory | None = None) -> optuna.Study:
    """Search ``space`` for ``settings.n_trials`` trials in total, scoring each candidate with ``score``.

    With a ``promotion``, trials whose cheap score would join the front are scored again at its
    higher fidelity (see :mod:`automc.search.fidelity`).

    ``backend`` (default: local, one trial at a time in this process) runs the trials; workers
    that cannot inherit ``score`` build it with ``rebuild()`` (see :mod:`automc.search.backends`).
    The backend must be connected; this function does not close it.

    Creates (or resumes) the study in ``run_dir/study.journal``; afterwards — also after Ctrl-C —
    writes ``run_dir/trials.csv`` and ``run_dir/pareto.json``. A search started on a run directory
    another search is running on joins it: both ask trials of the one study until their finished
    and running trials reach ``n_trials``. A search that opens a run directory alone marks trials
    left RUNNING by a killed process FAIL ("interrupted"); they do not count towards ``n_trials``
    and are run again.

    >>> study = run_search(space, score, Path("runs/x"), SearchSettings(n_trials=200))  # doctest: +SKIP
    >>> pareto_frame(study)[["trial", "accuracy", "latency_ms"]]  # doctest: +SKIP
    """
    if settings.n_trials < 0:
        raise ValueError(f"n_trials must be ≥ 0, got {settings.n_trials}")
    check_sampler_name(settings.sampler)  # before anything is written to run_dir
    backend = backend or LocalBackend()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = journal_storage(run_dir)
    verbosity = optuna.logging.get_verbosity()
    # Optuna logs a line per trial at INFO; the progress bar and trials.csv say it better.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Every search on run_dir holds LOCK_FILE shared until it ends (the kernel drops it even under
    # kill -9); one that gets it exclusive is alone, and may close out what a killed one left.
    try:
        with open(run_dir / LOCK_FILE, "a+") as held:
            with _exclusive(run_dir / OPEN_LOCK):
                study = _open_study(storage, space, settings, alone=_alone(run_dir))
                fcntl.flock(held, fcntl.LOCK_SH)
            try:
                if settings.n_trials > _finished_count(storage):
                    scorers = WorkerScorers(score, promotion.score if promotion is not None else None)
                    with SearchProgressBar(settings.n_trials, _finished_count(storage), settings.progress) as bar, \
                            backend.pool(scorers, rebuild) as pool:
                        _run_trials(study, space, pool, run_dir, settings, bar, promotion)
            finally:
                write_results(study, run_dir)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (waiting for it): one search at a time opens the study,
    and asks it for a trial."""
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alone(run_dir: Path) -> bool:
    """Does no other search hold ``run_dir``? (Asked while opening, under OPEN_LOCK.)"""
    with open(run_dir / LOCK_FILE, "a+") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def _open_study(storage: optuna.storages.BaseStorage, space: ResolvedSpace, settings: SearchSettings,
                alone: bool) -> optuna.Study:
    """Create or resume the study; ``alone``, close out interrupted trials and queue the missing
    baselines (a search joining a running one leaves both to it)."""
    # Read the journal first: the sampler's seed depends on how far a previous run got.
    previous = _finished_count(storage)
    # A resumed run reusing the first run's seed would re-propose the same random configs, and
    # so would a second search joining this one.
    sampler = make_sampler(settings.sampler, settings.seed + previous + (0 if alone else os.getpid()))
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME,
                                directions=list(DIRECTIONS), load_if_exists=True)
    if not alone:
        return study
    _fail_interrupted(study)
    _enqueue_missing_baselines(study, space)
    if settings.sensitivity_seeds and previous == 0:
        _enqueue_single_changes(study, space, settings.n_trials)
    return study


def _count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _enqueue_single_changes(study: optuna.Study, space: ResolvedSpace, n_trials: int) -> None:
    # A fresh study only: on resume the single changes are in the journal already (run or waiting).
    if any(single_change_of(t) is not None for t in study.get_trials(deepcopy=False)):
        return
    queued = _count(study, TrialState.WAITING)
    base = space.uniform()
    for name, params in single_change_params(space, max_changes=n_trials // 2 - queued).items():
        key, value = next((k, v) for k, v in params.items() if v != base[k])
        study.enqueue_trial(params, user_attrs={"seed": name, "single_change": [key, value]})


def _enqueue_combinations(study: optuna.Study, space: ResolvedSpace) -> None:
    """Once every single change has run (and the fp32 baseline with them), queue their combinations."""
    trials = study.get_trials(deepcopy=False)
    singles = [t for t in trials if single_change_of(t) is not None]
    if not singles or any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in singles):
        return
    if any(t.user_attrs.get("seed", "").startswith("combination:") for t in trials):
        return  # queued by an earlier (resumed) run
    fp32 = next((t for t in trials if t.user_attrs.get("baseline") == "fp32" and t.state == TrialState.COMPLETE), None)
    if fp32 is None:
        return
    reference = Fp32Scores(*fp32.values)
    scored = [SingleChange(*single_change_of(t), *t.values) for t in singles if t.state == TrialState.COMPLETE]
    for name, params in combination_params(space, reference, scored).items():
        study.enqueue_trial(params, user_attrs={"seed": f"combination:{name}"})


def _finished_count(storage: optuna.storages.BaseStorage) -> int:
    try:
        study_id = storage.get_study_id_from_name(STUDY_NAME)
    except KeyError:
        return 0
    return _counted(storage.get_all_trials(study_id, deepcopy=False))


def _counted(trials: list[FrozenTrial]) -> int:
    # an interrupted trial says nothing about its candidate: it is run again, not counted
    return sum(t.state.is_finished() and not _interrupted(t) for t in trials)


def _interrupted(t: FrozenTrial) -> bool:
    return str(t.user_attrs.get("error", "")).startswith("Interrupted")


def _fail_interrupted(study: optuna.Study) -> None:
    """Mark trials a killed search left RUNNING as FAIL, and queue each again (baselines are
    queued again by ``_enqueue_missing_baselines``)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # Trial(study, id) is Optuna's own handle; FrozenTrial exposes the id only privately.
        optuna.Trial(study, t._trial_id).set_user_attr("error", "Interrupted: still RUNNING when the search resumed")
        study.tell(t.number, state=TrialState.FAIL)
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if _interrupted(t) and "baseline" not in t.user_attrs and t.number not in retried and t.params:
            attrs = {k: t.user_attrs[k] for k in ("seed", *SINGLE_ATTRS) if k in t.user_attrs}
            study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": t.number})


def _enqueue_missing_baselines(study: optuna.Study, space: ResolvedSpace) -> None:
    # Fresh study: all baselines. Resumed: only those never queued, or lost to an interruption.
    have = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)
            if not str(t.user_attrs.get("error", "")).startswith("Interrupted")}
    for name, params in baseline_params(space).items():
        if name not in have:
            study.enqueue_trial(params, user_attrs={"baseline": name})


def _ask_candidate(space: ResolvedSpace, trial: optuna.Trial) -> Candidate:
    candidate = candidate_from_params(space, suggest_params(space, trial))
    trial.set_user_attr("candidate", candidate.to_json())
    return candidate


def _check_finite(ev: Evaluation) -> None:
    values = (float(ev.accuracy), float(ev.latency_ms), float(ev.size_bytes))
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"score returned non-finite values {dict(zip(OBJECTIVES, values))}")


def _record(space: ResolvedSpace, trial: optuna.Trial, ev: Evaluation) -> tuple[float, float, float]:
    """Store a scored trial's attrs and constraints; its objective values."""
    trial.set_user_attr("latency_source", ev.latency_source)
    for key, value in ev.extras.items():
        trial.set_user_attr(f"extras.{key}" if key in RESERVED_ATTRS else key, _jsonable(value))
    constraint = _constraints(space, ev)
    for key, value in constraint.items():
        # Optuna 5 reads constraints from the trial (constraints_func is deprecated) and
        # every sampler, random included, then keeps infeasible trials off the front.
        trial.set_constraint(key, value)
    if constraint:
        trial.set_user_attr("constraint", constraint)
    return float(ev.accuracy), float(ev.latency_ms), float(ev.size_bytes)


@dataclass(frozen=True)
class _Job:
    """A candidate in flight on the pool; ``cheap`` is set on a promotion: the score it was promoted on."""

    trial: optuna.Trial
    candidate: Candidate
    cheap: Evaluation | None = None


class _TrialFailed(Exception):
    """A trial's reason to fail ("Type: message")."""


def _run_trials(study: optuna.Study, space: ResolvedSpace, pool: TrialPool, run_dir: Path, settings: SearchSettings,
                bar: SearchProgressBar, promotion: Promotion | None) -> None:
    """Ask trials while the run has room, keeping ``pool.slots`` in flight, and tell each outcome
    as it arrives; a trial to promote goes back to a worker for its promoted accuracy first.

    This process alone writes its trials to the journal, so the count is exact and nothing runs
    twice; queued trials (baselines, single changes) are asked first, the combinations once those
    are in. A candidate proposed again reuses its first scores (seeded proxies and a fixed
    predictor give the same), promotion included.
    """
    inflight: dict[Future, _Job] = {}
    scored: dict[str, tuple[int, Evaluation, dict[str, Any]]] = {}
    submitting: optuna.Trial | None = None  # a trial scored in this process is in no future yet
    try:
        while True:
            while len(inflight) < pool.slots and (trial := _ask_within(study, run_dir, settings.n_trials)):
                candidate = _ask_candidate(space, trial)
                if candidate.to_json() in scored:
                    _tell_duplicate(study, space, trial, *scored[candidate.to_json()])
                    bar.update(study, _counted(study.get_trials(deepcopy=False)))
                    continue
                submitting = trial
                inflight[pool.submit(candidate)] = _Job(trial, candidate)
                submitting = None
            if not inflight:
                return
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in done:
                job = inflight.pop(future)
                ev = _settle(study, space, job, future.result(), promotion)
                if ev is not None and job.cheap is None and promotion is not None \
                        and wants_promotion(job.trial, ev, promotion):
                    submitting = job.trial
                    inflight[pool.submit(job.candidate, promote=True)] = replace(job, cheap=ev)
                    submitting = None
                    continue
                if ev is not None:
                    study.tell(job.trial, _record(space, job.trial, ev))
                    fidelity = {k: job.trial.user_attrs[k] for k in FIDELITY_ATTRS if k in job.trial.user_attrs}
                    scored[job.candidate.to_json()] = (job.trial.number, ev, fidelity)
                bar.update(study, _counted(study.get_trials(deepcopy=False)))
            if settings.sensitivity_seeds:
                _enqueue_combinations(study, space)
    except BaseException:
        # Ctrl-C or a driver error: what is still in flight will not be told; resume retries it.
        for trial in [job.trial for job in inflight.values()] + ([submitting] if submitting else []):
            trial.set_user_attr("error", "Interrupted: the search stopped while it was running")
            study.tell(trial, state=TrialState.FAIL)
        raise


def _ask_within(study: optuna.Study, run_dir: Path, n_trials: int) -> optuna.Trial | None:
    """A new trial, or ``None`` once the finished and running trials of every search on
    ``run_dir`` reach ``n_trials`` (counted and asked under a lock, so the total is exact)."""
    with _exclusive(run_dir / ASK_LOCK):
        trials = study.get_trials(deepcopy=False)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return study.ask() if _counted(trials) + running < n_trials else None


def _settle(study: optuna.Study, space: ResolvedSpace, job: _Job, result: WorkerResult,
            promotion: Promotion | None) -> Evaluation | None:
    """The evaluation a worker's ``result`` gives ``job``'s trial (its score, or its promoted
    accuracy), not yet told; ``None`` when the trial failed (told, with its reason)."""
    if job.cheap is None and result.worker:
        job.trial.set_user_attr("worker", result.worker)
    try:
        if result.error is not None:
            raise _TrialFailed(result.error)
        if job.cheap is not None:
            assert promotion is not None and result.promoted_accuracy is not None
            return record_promoted(job.trial, job.cheap, result.promoted_accuracy, promotion)
        assert result.evaluation is not None
        _check_finite(result.evaluation)
        return result.evaluation
    except (_TrialFailed, ValueError) as e:
        reason = str(e) if isinstance(e, _TrialFailed) else f"{type(e).__name__}: {e}"
        job.trial.set_user_attr("error", reason)
        study.tell(job.trial, state=TrialState.FAIL)
        return None


def _tell_duplicate(study: optuna.Study, space: ResolvedSpace, trial: optuna.Trial, first: int, ev: Evaluation,
                    fidelity: dict[str, Any]) -> None:
    trial.set_user_attr("duplicate_of", first)
    for name, value in fidelity.items():
        trial.set_user_attr(name, value)
    study.tell(trial, _record(space, trial, ev))


def _constraints(space: ResolvedSpace, ev: Evaluation) -> dict[str, float]:
    """Relative excess over each budget (0.1 = 10% over; ≤ 0 is within budget), and the
    shortfall under the accuracy floor (a fraction already: 0.02 = 2 points under).

    Relative, not absolute: NSGA-II sums violations, and ms and bytes must not be added raw.
    """
    out: dict[str, float] = {}
    if space.min_accuracy is not None:
        out["accuracy"] = space.min_accuracy - ev.accuracy
    if space.max_latency_ms is not None:
        out["latency_ms"] = (ev.latency_ms - space.max_latency_ms) / space.max_latency_ms
    if space.max_size_bytes is not None:
        out["size_bytes"] = (ev.size_bytes - space.max_size_bytes) / space.max_size_bytes
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)  # the journal stores JSON; a repr beats losing the extra
