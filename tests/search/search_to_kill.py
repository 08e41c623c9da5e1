"""A search process for the kill tests: the toy space and score, with one candidate that hangs.

``python search_to_kill.py RUN_DIR N_TRIALS JOBS CALLS_FILE HANG_AT [RAY_ADDRESS]``: every score appends its
pid to CALLS_FILE; the HANG_AT-th call (counting across processes) writes ``CALLS_FILE.hung`` and
sleeps, so a test can kill the search while that trial runs. HANG_AT 0: nothing hangs. With
RAY_ADDRESS the trials run on that Ray cluster, else in forked local workers (JOBS 1: in-process).
Each score takes ``TOY_SCORE_S`` seconds (default 0), so that two searches overlap.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from automc.search.backends import make_backend
from automc.search.driver import SearchSettings, run_search
from automc.search.worker import WorkerScorers

from search_toys import make_space, toy_score


def main(run_dir: str, n_trials: str, jobs: str, calls_file: str, hang_at: str, address: str = "") -> None:
    calls = Path(calls_file)
    seconds = float(os.environ.get("TOY_SCORE_S", "0"))

    def score(candidate):
        with open(calls, "a") as f:  # O_APPEND: one line per call, whichever process makes it
            f.write(f"{os.getpid()}\n")
        if int(hang_at) and len(calls.read_text().splitlines()) == int(hang_at):
            Path(f"{calls}.hung").write_text(str(os.getpid()))
            time.sleep(600)
        time.sleep(seconds)
        return toy_score(candidate)

    backend = make_backend("ray", int(jobs), address) if address else make_backend("local", int(jobs))
    backend.connect()
    try:
        run_search(make_space(), score, Path(run_dir), SearchSettings(n_trials=int(n_trials), seed=1, progress=False),
                   backend=backend, rebuild=lambda: WorkerScorers(score))  # a Ray actor gets the closure by value
    finally:
        backend.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
