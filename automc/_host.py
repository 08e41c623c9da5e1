"""Facts about this host, recorded beside measurements and checked against profiles."""

from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def host_description() -> str:
    """CPU model and core count of this host, recorded beside every measurement."""
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cpus, {platform.machine()})"


@lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this host (Linux), e.g. {'avx2', 'avx512_vnni'}."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
