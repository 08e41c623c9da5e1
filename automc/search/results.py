"""A run's result files beside its journal: ``trials.csv`` (every trial) and ``pareto.json``
(the front with full candidates), each written whole or not at all."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna

from automc.search.pareto import pareto_frame, trials_frame


def write_results(study: optuna.Study, run_dir: Path) -> None:
    """Write ``trials.csv`` (every trial) and ``pareto.json`` (front rows with full candidates)."""
    run_dir = Path(run_dir)
    _atomic_write(run_dir / "trials.csv", trials_frame(study).to_csv(index=False))
    front = pareto_frame(study)
    rows = [{k: (None if _is_nan(v) else v) for k, v in row.items()} for row in front.to_dict(orient="records")]
    _atomic_write(run_dir / "pareto.json", json.dumps(rows, indent=1, default=_json_default))


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars from pandas
        return v.item()
    return str(v)


def _atomic_write(path: Path, text: str) -> None:
    # A reader (the CLI, a browser) never sees half a file, even if we are killed mid-write;
    # two searches sharing a run directory each write their own temporary file.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
