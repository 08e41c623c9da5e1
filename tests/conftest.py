"""Shared fixtures: a hermetic cache, the trained demo model, this host's measurable profile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before automc is imported anywhere: CI gets a fresh cache (calibration, tuning databases and
# the demo weights are all rebuilt, so "never measured twice" is tested from empty); developers
# keep one between runs.
if os.environ.get("CI") == "true":
    os.environ["AUTOMC_CACHE"] = tempfile.mkdtemp(prefix="automc-ci-cache-")
else:
    os.environ.setdefault("AUTOMC_CACHE", str(Path.home() / ".cache" / "automc-test"))
# the measurements shipped in hw_profiles/measurements/ would calibrate this host before any test
# did: tests that need them say so (tests/latency/test_store.py)
os.environ["AUTOMC_SHIPPED_MEASUREMENTS"] = "0"

import pytest
import yaml

from automc.api import default_profile_name
from automc.model.zoo import BuiltinModel, demo_cnn
from automc.profiles import HardwareProfile, load_profile


@pytest.fixture(scope="session")
def demo() -> BuiltinModel:
    return demo_cnn()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run torch on one intra-op thread: the 2 cores are shared with TVM's builder and runner
    processes, and two torch threads contending with them were measured ~4× slower (60 s vs 14 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def host_profile() -> HardwareProfile:
    """The shipped x86 profile this host can measure (x86-vnni on VNNI hosts, else x86-avx2)."""
    return load_profile(default_profile_name())


@pytest.fixture(scope="session")
def quick_profile_path(tmp_path_factory, host_profile: HardwareProfile) -> Path:
    """The host profile with no MetaSchedule trials and short timing runs: real TVM builds and
    measurements at test speed (tuning itself is tested on one kernel in tests/latency)."""
    data = host_profile.model_dump()
    data["name"] = f"{host_profile.name}-quick"
    data["tuning"] = {"trials_per_kernel": 0, "repeat": 3, "min_repeat_ms": 5.0, "task_min_repeat_ms": 2.0}
    path = tmp_path_factory.mktemp("profiles") / "quick.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def quick_profile(quick_profile_path: Path) -> HardwareProfile:
    return load_profile(str(quick_profile_path))


def _require_in_ci(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def require_in_ci():
    """``require_in_ci(cond, why)``: skip on a user's machine when ``cond`` is false; in CI
    (CI=true) the test must run, so it fails instead. For what CI can always provide (system
    packages the Makefile installs), never for CPU features: see ``require_cpu``."""
    return _require_in_ci


def _require_cpu(flag: str, what: str) -> None:
    from automc._host import host_cpu_flags

    if flag not in host_cpu_flags():
        pytest.skip(f"this host's CPU lacks {flag}: {what} cannot run here")


@pytest.fixture
def require_cpu():
    """``require_cpu(flag, what)``: skip, in CI too, where this host's CPU lacks the feature
    ``flag`` (a /proc/cpuinfo flag such as ``avx512_vnni``). CI runs on whichever host a change
    is submitted from, so code that needs the feature to *execute* cannot be required there;
    what can be checked without running it (builds, generated assembly) runs everywhere."""
    return _require_cpu
