"""A run directory's record of the search that made it (``run.json``), read and written here only.

Every later command (``pareto``, ``export``, ``validate``, a resumed search, a search backend's
worker) reopens a run from this record, so its fields are one frozen dataclass rather than a
loose dict. Records written by older automc lack later fields; reading fills them with what
those runs did (the ``eval`` proxy, no floor, the profile and space named by their names).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.errors import UserInputError

RUN_JSON = "run.json"
# what a run searched: a resumed search must search the same, or it is refused
SEARCH_IDENTITY = ("model", "profile", "space", "proxy", "promote", "min_accuracy")


@dataclass(frozen=True, kw_only=True)  # kw_only: fields in run.json's order
class RunInfo:
    """What a search was asked and what it ran on. ``model`` is the model's label and
    ``model_source`` how to rebuild it (``model.source.ModelSource.to_dict``; None in runs
    written before sources were recorded); ``profile``/``space`` are names, and
    ``profile_source``/``space_source`` what to load them from (a name or a YAML path);
    ``min_accuracy`` the floor (a fraction) or None; ``latency_source`` the predictor's kind
    (``calibrated`` or an estimate's label); ``shipped_measurements`` the shipped-records verdict."""

    model: str
    model_source: dict[str, str] | None = None
    profile: str
    space: str
    space_source: str = ""
    profile_source: str = ""
    n_trials: int = 0
    proxy: str = "eval"  # runs written before proxies existed used eval
    promote: str | None = None
    min_accuracy: float | None = None
    sampler: str = "nsga2"  # the default of runs written before it was recorded
    seed: int = 0
    input_shape: tuple[int, ...] = ()
    host: str = ""
    python: str = ""
    torch: str = ""
    optuna: str = ""
    shipped_measurements: str | None = None
    tvm: str = ""
    latency_source: str | None = None

    def __post_init__(self) -> None:
        # older records named the profile and space only: load them by those names
        object.__setattr__(self, "profile_source", self.profile_source or self.profile)
        object.__setattr__(self, "space_source", self.space_source or self.space)
        object.__setattr__(self, "input_shape", tuple(self.input_shape))

    @classmethod
    def read(cls, run_dir: Path | str) -> "RunInfo":
        """The record of ``run_dir``; a UserInputError naming RUN when there is none."""
        path = Path(run_dir) / RUN_JSON
        if not path.exists():
            raise UserInputError(f"RUN {run_dir}: no {RUN_JSON} there; give a directory made by `automc search`")
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, run_dir: Path | str) -> Path:
        """Write ``run.json`` into ``run_dir`` (which exists); returns its path."""
        path = Path(run_dir) / RUN_JSON
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    def check_resumable(self, run_dir: Path) -> None:
        """A run directory is resumed only by the same search; anything else is refused (a
        UserInputError naming ``--run-dir``), never overwritten."""
        if (run_dir / RUN_JSON).exists():
            old = RunInfo.read(run_dir)
            for field in SEARCH_IDENTITY:
                if getattr(old, field) != getattr(self, field):
                    raise UserInputError(f"--run-dir {run_dir}: holds a search of {field} '{getattr(old, field)}', "
                                         f"not '{getattr(self, field)}'; choose a new run directory")
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise UserInputError(f"--run-dir {run_dir}: exists and is not an automc run; choose a new run directory")


def new_run_dir(model_name: str, profile_name: str, root: Path = Path("runs")) -> Path:
    """A fresh ``root/<time>-<model>-<profile>[-n]`` path (not created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{model_name}-{profile_name}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{model_name}-{profile_name}-{n}"
    return path
