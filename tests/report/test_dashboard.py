"""`automc dashboard RUN`: optuna-dashboard really started on a loopback port over a run's
journal, a page and the study's trials fetched over HTTP, then stopped."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

from automc.search.pareto import STUDY_NAME


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_dashboard_serves_the_runs_trials_on_loopback(toy_study, tmp_path):
    run, port = tmp_path / "run", _free_port()
    server = subprocess.Popen([sys.executable, "-m", "automc.cli", "dashboard", str(run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        assert b"<html" in _get(f"http://127.0.0.1:{port}/dashboard", deadline).lower()
        studies = json.loads(_get(f"http://127.0.0.1:{port}/api/studies", deadline))["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == STUDY_NAME]
        detail = json.loads(_get(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}?after=0", deadline))
        assert len(detail["trials"]) == len(toy_study.trials)
        assert any(a["key"] == "candidate" for a in detail["trials"][0]["user_attrs"])
    finally:
        server.terminate()
        server.wait(timeout=30)
