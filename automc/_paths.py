"""Where automc keeps its shipped YAML files and its caches."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "hw_profiles"
SPACES_DIR = REPO_ROOT / "search_spaces"
# measurements shipped with the code (one JSONL store per profile, each record naming the host it
# was measured on): a fresh clone on that host starts calibrated instead of spending an hour
SHIPPED_MEASUREMENTS_DIR = PROFILES_DIR / "measurements"


def cache_dir() -> Path:
    """The cache root (trained demo weights, calibration stores, tuning databases).

    ``AUTOMC_CACHE`` overrides the default ``~/.cache/automc``.
    """
    root = Path(os.environ.get("AUTOMC_CACHE", Path.home() / ".cache" / "automc"))
    root.mkdir(parents=True, exist_ok=True)
    return root
