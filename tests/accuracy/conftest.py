"""Fixtures for the accuracy-proxy tests: the real trained demo model."""

from __future__ import annotations

import pytest
import torch

from automc.model.zoo import BuiltinModel, demo_cnn


@pytest.fixture(scope="session")
def demo() -> BuiltinModel:
    return demo_cnn()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one intra-op thread: the 2 shared cores are often busy with other jobs, and two
    torch threads contending with them were measured ~4× slower than one (60 s vs 14 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
