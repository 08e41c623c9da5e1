"""Fixtures for the compression tests: the real trained demo model and small real batches."""

from __future__ import annotations

import pytest
import torch

from automc.model.introspect import LayerTable, introspect
from automc.model.zoo import BuiltinModel


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
