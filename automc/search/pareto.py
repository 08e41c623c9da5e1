"""Read a finished (or running) search back: every trial, the Pareto front, its hypervolume.

A search lives in one Optuna study, ``"automc"``, in the run directory's journal file. The three
objectives are accuracy (fraction, maximised), latency (ms, minimised) and size (bytes,
minimised). Trials carry their story in user attributes: ``candidate`` (JSON), ``baseline``
(uniform baseline name), ``seed`` (``single:…`` or ``combination:…``, see
:mod:`automc.search.seeds`), ``latency_source`` (``calibrated`` | ``uncalibrated``), ``error``
(why a trial failed) and ``constraint`` (relative excess over each budget).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from automc.types import Candidate

STUDY_NAME = "automc"
JOURNAL_FILE = "study.journal"
OBJECTIVES = ("accuracy", "latency_ms", "size_bytes")
DIRECTIONS = ("maximize", "minimize", "minimize")

# Columns every trials frame has, in this order; Optuna params follow.
# ``fidelity`` names the accuracy proxy behind ``accuracy`` in a multi-fidelity search (else
# empty); ``accuracy_proxy`` / ``accuracy_promoted`` are its cheap and promoted numbers.
TRIAL_COLUMNS = ("number", "state", "accuracy", "latency_ms", "size_bytes", "feasible", "baseline", "seed",
                 "latency_source", "fidelity", "accuracy_proxy", "accuracy_promoted", "error", "summary",
                 "duration_s")
FRONT_COLUMNS = ("trial", "accuracy", "latency_ms", "size_bytes", "baseline", "latency_source", "fidelity",
                 "accuracy_proxy", "accuracy_promoted", "candidate", "summary")

try:  # Optuna ≥ 3 ships an exact WFG hypervolume but keeps it private (no public HV helper in 5.0).
    from optuna._hypervolume import compute_hypervolume as _optuna_hv
except ImportError:  # pragma: no cover - only if Optuna moves it
    _optuna_hv = None


def journal_storage(run_dir: Path) -> optuna.storages.JournalStorage:
    """The study storage of a run: an append-only journal file, safe for several processes."""
    backend = optuna.storages.journal.JournalFileBackend(str(Path(run_dir) / JOURNAL_FILE))
    return optuna.storages.JournalStorage(backend)


def load_study(run_dir: Path) -> optuna.Study:
    """Open the study of a run directory (read or resume).

    >>> study = load_study(Path("runs/2025-01-01-demo-cnn-x86-vnni"))  # doctest: +SKIP
    >>> len(study.trials)  # doctest: +SKIP
    200
    """
    path = Path(run_dir) / JOURNAL_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is '{run_dir}' a search run directory?")
    return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(run_dir))


def summarize(candidate: Candidate) -> str:
    """A short per-layer text: bit-width counts, then pruned, factorized and changed cells.

    >>> from automc.types import LayerChoice
    >>> summarize(Candidate({"a": LayerChoice(8, 8, 0.25), "b": LayerChoice(4, 8, rank=0.5)}, {"x": "skip"}))
    '8/8×1 4/8×1 p.25×1 r.5×1 skip×1'
    """
    choices = list(candidate.layers.values())
    bits = Counter((c.w_bits, c.a_bits) for c in choices)
    parts = [f"{w}/{a}×{n}" for (w, a), n in sorted(bits.items(), reverse=True)]
    prune = Counter(c.prune for c in choices if c.prune > 0)
    parts += [f"p{_ratio(r)}×{n}" for r, n in sorted(prune.items())]
    rank = Counter(c.rank for c in choices if c.rank < 1)
    parts += [f"r{_ratio(r)}×{n}" for r, n in sorted(rank.items())]
    cells = Counter(c for c in candidate.cells.values() if c != "keep")
    parts += [f"{c}×{n}" for c, n in sorted(cells.items())]
    return " ".join(parts)


def _ratio(x: float) -> str:
    return f"{x:g}".removeprefix("0")


def is_feasible(trial: FrozenTrial) -> bool:
    """Within every budget (a trial of an unconstrained study always is)."""
    return all(v <= 0 for v in trial.constraints.values())


def _candidate(trial: FrozenTrial) -> Candidate | None:
    text = trial.user_attrs.get("candidate")
    return Candidate.from_json(text) if text else None


def _fidelity(trial: FrozenTrial) -> dict[str, Any]:
    return {k: trial.user_attrs.get(k) for k in ("fidelity", "accuracy_proxy", "accuracy_promoted")}


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: ``TRIAL_COLUMNS`` then one column per Optuna param.

    ``accuracy`` is a fraction, ``latency_ms`` in ms, ``size_bytes`` in bytes; all three are NaN
    for trials that did not complete. ``state`` is COMPLETE, FAIL, PRUNED, RUNNING or WAITING.
    """
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = t.values if t.state == TrialState.COMPLETE and t.values else [None] * 3
        cand = _candidate(t)
        duration = t.duration.total_seconds() if t.duration is not None else None
        row: dict[str, Any] = {
            "number": t.number, "state": t.state.name,
            **dict(zip(OBJECTIVES, values)),
            "feasible": is_feasible(t) if t.state == TrialState.COMPLETE else None,
            "baseline": t.user_attrs.get("baseline"),
            "seed": t.user_attrs.get("seed"),
            "latency_source": t.user_attrs.get("latency_source"),
            **_fidelity(t),
            "error": t.user_attrs.get("error"),
            "summary": summarize(cand) if cand is not None else None,
            "duration_s": duration,
        }
        row.update(t.params)
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(TRIAL_COLUMNS))
    frame = pd.DataFrame(rows)
    frame["size_bytes"] = frame["size_bytes"].astype("Int64")  # Optuna stores floats; bytes are whole
    return frame


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible COMPLETE trials no other feasible trial dominates, one per distinct candidate."""
    # best_trials already drops infeasible trials whenever any trial carries constraints.
    front = [t for t in study.best_trials if is_feasible(t)]
    seen: set[str] = set()
    unique = []
    for t in sorted(front, key=lambda t: t.number):
        # Samplers re-propose configs they have tried; the first trial (a baseline, if any) stays.
        key = t.user_attrs.get("candidate") or json.dumps(t.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(t)
    return unique


def pareto_frame(study: optuna.Study) -> pd.DataFrame:
    """The Pareto front as ``FRONT_COLUMNS``, sorted by latency (fastest first).

    ``candidate`` holds the full candidate dict (``Candidate.to_dict()``), ``summary`` the short
    text of :func:`summarize`.
    """
    rows = []
    for t in front_trials(study):
        cand = _candidate(t)
        rows.append({
            "trial": t.number,
            "accuracy": t.values[0], "latency_ms": t.values[1], "size_bytes": int(t.values[2]),
            "baseline": t.user_attrs.get("baseline"),
            "latency_source": t.user_attrs.get("latency_source"),
            **_fidelity(t),
            "candidate": cand.to_dict() if cand is not None else None,
            "summary": summarize(cand) if cand is not None else "",
        })
    if not rows:
        return pd.DataFrame(columns=list(FRONT_COLUMNS))
    frame = pd.DataFrame(rows, columns=list(FRONT_COLUMNS))
    return frame.sort_values(["latency_ms", "accuracy"], ascending=[True, False], ignore_index=True)


@dataclass(frozen=True)
class ReferencePoint:
    """The worst point that still counts for hypervolume: accuracy (fraction), ms, bytes."""

    accuracy: float
    latency_ms: float
    size_bytes: float


def reference_point(trials: pd.DataFrame, margin: float = 1.1) -> ReferencePoint:
    """A reference just beyond the slowest and largest completed trial, at accuracy 0.

    Compare hypervolumes of two searches only against one shared reference.
    """
    done = trials.dropna(subset=list(OBJECTIVES))
    if done.empty:
        return ReferencePoint(0.0, 1.0, 1.0)
    return ReferencePoint(0.0, float(done["latency_ms"].max()) * margin, float(done["size_bytes"].max()) * margin)


def hypervolume(frame: pd.DataFrame, ref: ReferencePoint) -> float:
    """Hypervolume of ``frame``'s (accuracy, latency_ms, size_bytes) points, normalised to [0, 1].

    Each objective is scaled so that the ideal (accuracy 1, 0 ms, 0 bytes) is 0 and ``ref`` is 1;
    1.0 would be a model that is perfect, instant and empty. Points beyond ``ref`` count nothing.

    >>> f = pd.DataFrame({"accuracy": [0.9], "latency_ms": [5.0], "size_bytes": [50]})
    >>> round(hypervolume(f, ReferencePoint(0.0, 10.0, 100)), 3)
    0.225
    """
    if frame.empty:
        return 0.0
    acc = frame["accuracy"].to_numpy(float)
    loss = np.column_stack([
        (1.0 - acc) / (1.0 - ref.accuracy),
        frame["latency_ms"].to_numpy(float) / ref.latency_ms,
        frame["size_bytes"].to_numpy(float) / ref.size_bytes,
    ])
    loss = loss[np.all(np.isfinite(loss), axis=1) & np.all(loss < 1.0, axis=1)]
    if len(loss) == 0:
        return 0.0
    if _optuna_hv is not None:
        return float(_optuna_hv(loss, np.ones(3)))
    return _hv3_fallback(loss)  # pragma: no cover


def _hv3_fallback(loss: np.ndarray) -> float:
    """Exact 3-D hypervolume by slicing along the first axis (O(n² log n); fronts are small)."""
    xs = np.unique(np.append(loss[:, 0], 1.0))
    total = 0.0
    for lo, hi in zip(xs[:-1], xs[1:]):
        pts = loss[loss[:, 0] <= lo][:, 1:]
        # 2-D area dominated in (y, z) by the points present in this slab.
        pts = pts[np.argsort(pts[:, 0])]
        area, best_z = 0.0, 1.0
        for i, (y, z) in enumerate(pts):
            best_z = min(best_z, z)
            nxt = pts[i + 1, 0] if i + 1 < len(pts) else 1.0
            area += (nxt - y) * (1.0 - best_z)
        total += (hi - lo) * area
    return total
