"""The ``sensitivity`` proxy: per-layer, per-choice accuracy deltas, combined additively.

Each delta is the ``eval`` proxy's accuracy of the model with that one change (one layer's
bit-width, pruning ratio or rank, or one block's cell) minus the uncompressed model's. A delta
is measured the first time a candidate uses it and kept, so a search pays for each at most
once; after that a candidate costs a sum of dictionary look-ups (microseconds).
"""

from __future__ import annotations

from typing import Hashable

from torch import nn

from automc.accuracy.base import ProxyInputs
from automc.accuracy.eval_proxy import EvalProxy
from automc.compress import apply_candidate
from automc.types import Candidate, LayerChoice


class SensitivityProxy:
    """Accuracy estimated as fp32 accuracy + Σ single-change deltas, clipped to [0, 1].

    Interactions between changes are ignored (that is what makes it cheap); a change inside a
    block the candidate skips still counts its delta.

    Example:
        >>> proxy = SensitivityProxy(ProxyInputs(model, x, evaluate, calib))
        >>> proxy(compressed, candidate)  # the model argument is not used
        0.9425
    """

    def __init__(self, inputs: ProxyInputs):
        self.inputs = inputs
        self._eval = EvalProxy(inputs.evaluate, inputs.calib_batches)
        self._base: float | None = None
        self._deltas: dict[Hashable, float] = {}

    @property
    def measured(self) -> int:
        """How many single-change deltas have been measured so far."""
        return len(self._deltas)

    def __call__(self, model: nn.Module | None, candidate: Candidate) -> float:
        base = total = self._fp32()
        for key, single in _single_changes(candidate):
            if key not in self._deltas:
                self._deltas[key] = self._score(single) - base
            total += self._deltas[key]
        return min(1.0, max(0.0, total))

    def _fp32(self) -> float:
        if self._base is None:
            self._base = self._score(Candidate())
        return self._base

    def _score(self, candidate: Candidate) -> float:
        i = self.inputs
        return self._eval(apply_candidate(i.teacher, candidate, i.example_input, i.calib_batches), candidate)


def _single_changes(candidate: Candidate) -> list[tuple[Hashable, Candidate]]:
    """Every one-change candidate ``candidate`` is made of, each with its cache key."""
    out: list[tuple[Hashable, Candidate]] = []
    for name, c in sorted(candidate.layers.items()):
        if c.quantized:
            out.append(((name, "bits", c.w_bits, c.a_bits), Candidate({name: LayerChoice(c.w_bits, c.a_bits)})))
        if c.prune > 0:
            out.append(((name, "prune", c.prune), Candidate({name: LayerChoice(prune=c.prune)})))
        if c.rank < 1:
            out.append(((name, "rank", c.rank), Candidate({name: LayerChoice(rank=c.rank)})))
    for block, cell in sorted(candidate.cells.items()):
        if cell != "keep":
            out.append(((block, "cell", cell), Candidate(cells={block: cell})))
    return out
