"""Fixtures for the compression tests: the real trained demo model and small real batches."""

from __future__ import annotations

import pytest
import torch

from automc.model.introspect import LayerTable, introspect
from automc.model.zoo import BuiltinModel, demo_cnn


@pytest.fixture(scope="session")
def demo() -> BuiltinModel:
    return demo_cnn()


@pytest.fixture(scope="session")
def table(demo: BuiltinModel) -> LayerTable:
    return introspect(demo.model, demo.example_input)


@pytest.fixture(scope="session")
def batch(demo: BuiltinModel) -> torch.Tensor:
    """16 real validation-distribution images: enough to compare outputs, cheap on 2 cores."""
    return demo.calib_batches[0][:16]


@pytest.fixture(scope="session")
def calib(demo: BuiltinModel) -> tuple[torch.Tensor, ...]:
    """One small calibration batch, for tests that check structure rather than accuracy."""
    return (demo.calib_batches[0][:32],)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one intra-op thread: the 2 shared cores are often busy with other jobs, and two
    torch threads contending with them were measured ~4× slower than one (60 s vs 14 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
