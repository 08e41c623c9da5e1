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
import random
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
from optuna.trial import FrozenTrial, TrialState

from automc.errors import UserInputError
from automc.search.fidelity import FIDELITY_ATTRS, Promotion, promote, record_promoted, wants_promotion
from automc.search.pareto import DIRECTIONS, OBJECTIVES, STUDY_NAME, journal_storage
from automc.search.backends import SearchBackend, TrialPool
from automc.search.backends.local import LocalBackend
from automc.search.progress import SearchProgressBar
from automc.search.results import write_results
from automc.search.samplers import check_sampler_name, make_sampler
from automc.search.seeds import (SINGLE_ATTRS, Fp32Scores, SingleChange, combination_params, single_change_of,
                                 single_change_params)
from automc.search.space import ResolvedSpace, candidate_from_params, param_options
from automc.search.worker import ScorerFactory, WorkerResult, WorkerScorers
from automc.types import Candidate, Evaluation

# User attrs the driver writes itself; score extras with these names are stored as "extras.<name>".
RESERVED_ATTRS = frozenset({"candidate", "baseline", "seed", "single_change", "probe", "latency_source", "error",
                            "constraint", "worker", "retry_of", "duplicate_of", *FIDELITY_ATTRS})

Score = Callable[[Candidate], Evaluation]
LOCK_FILE = ".search.lock"  # in a run directory: held by the search running on it


@dataclass(frozen=True)
class SearchSettings:
    """How to search: ``n_trials`` in total (a resumed run only adds the missing ones),
    ``sampler`` a name in ``samplers.SAMPLERS``, ``seed`` for the sampler, ``progress`` to draw a bar,
    ``sensitivity_seeds`` to try single choices and enqueue their combinations (see
    :mod:`automc.search.seeds`; they take at most half of ``n_trials``)."""

    n_trials: int
    sampler: str = "nsga2"
    seed: int = 0
    progress: bool = True
    sensitivity_seeds: bool = True


def suggest_params(space: ResolvedSpace, trial: optuna.Trial) -> dict[str, Any]:
    """Ask ``trial`` for every choice of ``space`` that has more than one option (names as in
    :func:`~automc.search.space.param_options`, e.g. ``{'conv1.bits': '8/8', 'blk1.cell': 'keep'}``)."""
    return {name: trial.suggest_categorical(name, options) for name, options in param_options(space).items()}


def baseline_params(space: ResolvedSpace) -> dict[str, dict[str, Any]]:
    """Uniform baselines as name → Optuna params: fp32, int8, prune (50%), w4a8 (4-bit weights,
    8-bit activations) and lowrank (rank ½), duplicates dropped.

    A space without 8-bit (or without 50% pruning) makes that baseline equal to fp32; it is
    then left out rather than run twice.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, params in (("fp32", space.uniform()), ("int8", space.uniform((8, 8))),
                         ("prune", space.uniform(prune=0.5)), ("w4a8", space.uniform((4, 8))),
                         ("lowrank", space.uniform(rank=0.5))):
        if params not in out.values():
            out[name] = params
    return out


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
    writes ``run_dir/trials.csv`` and ``run_dir/pareto.json``. One runner per run directory: on
    resume, trials left RUNNING by a killed process are marked FAIL ("interrupted"), do not count
    towards ``n_trials`` and are run again.

    >>> study = run_search(space, score, Path("runs/x"), SearchSettings(n_trials=200))  # doctest: +SKIP
    >>> pareto_frame(study)[["trial", "accuracy", "latency_ms"]]  # doctest: +SKIP
    """
    if settings.n_trials < 0:
        raise ValueError(f"n_trials must be ≥ 0, got {settings.n_trials}")
    check_sampler_name(settings.sampler)  # before anything is written to run_dir
    backend = backend or LocalBackend()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _only_driver(run_dir):
        return _run_search(space, score, run_dir, settings, promotion, backend, rebuild)


@contextlib.contextmanager
def _only_driver(run_dir: Path) -> Iterator[None]:
    """Refuse a second search on a run directory while one runs: two drivers would each count
    the other's trials as interrupted. The lock dies with its process, even under kill -9."""
    with open(run_dir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(f"--run-dir {run_dir}: another automc search is running on it; wait for it to "
                                 "finish, or choose another run directory") from None
        yield


def _run_search(space: ResolvedSpace, score: Score, run_dir: Path, settings: SearchSettings,
                promotion: Promotion | None, backend: SearchBackend, rebuild: ScorerFactory | None) -> optuna.Study:
    storage = journal_storage(run_dir)
    verbosity = optuna.logging.get_verbosity()
    # Optuna logs a line per trial at INFO; the progress bar and trials.csv say it better.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _open_study(storage, space, settings)
        finished = _finished_count(storage)
        try:
            if settings.n_trials > finished:
                objective = _objective(space, score, promotion)
                scorers = WorkerScorers(score, promotion.score if promotion is not None else None)
                with SearchProgressBar(settings.n_trials, finished, settings.progress) as bar, \
                        backend.pool(scorers, rebuild) as pool:
                    if pool is not None:
                        _run_pool(study, space, pool, settings.n_trials - finished, settings, bar, promotion)
                    else:
                        def run(n: int) -> None:
                            if n > 0:
                                study.optimize(objective, n_trials=n, catch=(Exception,), callbacks=[bar.update])

                        # Queued first (baselines, single changes), so that the combinations can read them.
                        run(min(_count(study, TrialState.WAITING), settings.n_trials - _finished_count(storage)))
                        if settings.sensitivity_seeds:
                            _enqueue_combinations(study, space)
                        run(settings.n_trials - _finished_count(storage))
        finally:
            write_results(study, run_dir)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study


def _open_study(storage: optuna.storages.BaseStorage, space: ResolvedSpace, settings: SearchSettings) -> optuna.Study:
    """Create or resume the study, close out interrupted trials, queue the missing baselines."""
    # Read the journal first: the sampler's seed depends on how far a previous run got.
    previous = _finished_count(storage)
    # A resumed run reusing the first run's seed would re-propose the same random configs.
    sampler = make_sampler(settings.sampler, settings.seed + previous)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=STUDY_NAME,
                                directions=list(DIRECTIONS), load_if_exists=True)
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
    # an interrupted trial says nothing about its candidate: it is run again, not counted
    return sum(t.state.is_finished() and not _interrupted(t) for t in storage.get_all_trials(study_id, deepcopy=False))


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


def _objective(space: ResolvedSpace, score: Score,
               promotion: Promotion | None) -> Callable[[optuna.Trial], tuple[float, float, float]]:
    # Samplers propose a candidate again now and then, and its scores (seeded proxies, a fixed
    # predictor) come out the same: the first trial's are reused, promotion included.
    scored: dict[str, tuple[int, Evaluation, dict[str, Any]]] = {}

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        candidate = _ask_candidate(space, trial)
        key = candidate.to_json()
        if key in scored:
            number, ev, attrs = scored[key]
            trial.set_user_attr("duplicate_of", number)
            for name, value in attrs.items():
                trial.set_user_attr(name, value)
            return _record(space, trial, ev)
        try:
            ev = score(candidate)
            _check_finite(ev)
            if promotion is not None:
                ev = promote(trial, candidate, ev, promotion)
        except Exception as e:
            # Optuna records the FAIL state but not the reason in a form trials.csv can show.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        scored[key] = (trial.number, ev, {k: trial.user_attrs[k] for k in FIDELITY_ATTRS if k in trial.user_attrs})
        return _record(space, trial, ev)

    return objective


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


def _run_pool(study: optuna.Study, space: ResolvedSpace, pool: TrialPool, n: int, settings: SearchSettings,
              bar: SearchProgressBar, promotion: Promotion | None) -> None:
    """Ask ``n`` trials, keeping ``pool.slots`` in flight, and tell each outcome as it arrives; a
    trial to promote goes back to a worker for its promoted accuracy before it is told.

    The driver alone writes the journal, so the count is exact and nothing runs twice; queued
    trials (baselines, single changes) are asked first, the combinations once those are in.
    """
    # each in-flight job: its trial, candidate, and cheap evaluation when it is a promotion
    inflight: dict[Future, tuple[optuna.Trial, Candidate, Evaluation | None]] = {}
    asked = 0
    try:
        while asked < n or inflight:
            while asked < n and len(inflight) < pool.slots:
                trial = study.ask()
                candidate = _ask_candidate(space, trial)
                inflight[pool.submit(candidate)] = (trial, candidate, None)
                asked += 1
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for future in done:
                trial, candidate, cheap = inflight.pop(future)
                result = future.result()
                if cheap is None:
                    trial.set_user_attr("worker", result.worker)
                to_promote = _tell(study, space, trial, result, cheap, promotion)
                if to_promote is not None:
                    inflight[pool.submit(candidate, promote=True)] = (trial, candidate, to_promote)
                else:
                    bar.update(study, None)
            if settings.sensitivity_seeds:
                _enqueue_combinations(study, space)
    except BaseException:
        # Ctrl-C or a driver error: what is still in flight will not be told; resume retries it.
        for trial, _, _ in inflight.values():
            trial.set_user_attr("error", "Interrupted: the search stopped while it was running")
            study.tell(trial, state=TrialState.FAIL)
        raise


def _tell(study: optuna.Study, space: ResolvedSpace, trial: optuna.Trial, result: WorkerResult,
          cheap: Evaluation | None, promotion: Promotion | None) -> Evaluation | None:
    """Tell the study ``trial``'s outcome from a worker's ``result``: its score, or with ``cheap``
    (the score it was promoted on) its promoted accuracy. A trial that is to be promoted is not
    told: its cheap evaluation is returned instead."""
    error = result.error
    if error is None:
        try:
            if cheap is None:
                ev = result.evaluation
                assert ev is not None
                _check_finite(ev)
                if promotion is not None and wants_promotion(trial, ev, promotion):
                    return ev
            else:
                assert promotion is not None and result.promoted_accuracy is not None
                ev = record_promoted(trial, cheap, result.promoted_accuracy, promotion)
            study.tell(trial, _record(space, trial, ev))
            return None
        except ValueError as e:
            error = f"{type(e).__name__}: {e}"
    trial.set_user_attr("error", error)
    study.tell(trial, state=TrialState.FAIL)
    return None


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


def random_params(space: ResolvedSpace, rng: random.Random) -> dict[str, Any]:
    """Optuna params of a uniformly random candidate of ``space``."""
    return {name: rng.choice(options) for name, options in param_options(space).items()}


def calibration_candidates(space: ResolvedSpace, n_random: int = 64, seed: int = 0) -> tuple[list[Candidate], list[Candidate]]:
    """(the uniform baselines, ``n_random`` random candidates): what calibration measures first."""
    rng = random.Random(seed)
    first = [candidate_from_params(space, p) for p in baseline_params(space).values()]
    return first, [candidate_from_params(space, random_params(space, rng)) for _ in range(n_random)]
