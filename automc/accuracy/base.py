"""The accuracy-proxy protocol: anything that scores a (compressed) model."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class AccuracyProxy(Protocol):
    """Scores a compressed model: returns an accuracy estimate, a fraction in 0..1.

    A proxy may change the model it is given (e.g. recalibrate BatchNorm), never the
    uncompressed original: callers pass the copy made by ``compress.apply_candidate``.
    """

    def __call__(self, model: nn.Module) -> float: ...
