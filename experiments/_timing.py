"""Wall-clock timing of Python callables (torch, ONNX Runtime, ...) for the experiments, the
same way for every backend: 10 warm-up calls, then the median over ``repeat`` runs that each
average as many calls as fill ``min_repeat_ms`` (TVM code is timed by ``time_evaluator``)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch


def median_ms(run: Callable[[], object], repeat: int, min_repeat_ms: float) -> float:
    """Median ms per call of ``run()`` (under ``torch.inference_mode``)."""
    with torch.inference_mode():
        for _ in range(10):
            run()
        t = time.perf_counter()
        run()
        per_call = max(time.perf_counter() - t, 1e-7)
        number = max(1, int(min_repeat_ms / 1e3 / per_call))
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            for _ in range(number):
                run()
            runs.append((time.perf_counter() - t) / number * 1e3)
    return float(np.median(runs))
