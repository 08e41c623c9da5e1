"""The ``finetune`` proxy: a short distillation recovery of the candidate, then evaluate."""

from __future__ import annotations

from torch import nn

from automc.accuracy.base import ProxyInputs
from automc.accuracy.recovery import DistillationSet, RecoveryBudget, distillation_set, recover
from automc.errors import UserInputError
from automc.types import Candidate

# Short enough for every trial of a search (a few seconds on demo-cnn), long enough that
# pruned and factorized candidates show most of what they would recover.
FINETUNE_STEPS = 40


class FinetuneProxy:
    """Accuracy after ``steps`` steps of :func:`~automc.accuracy.recovery.recover` (seeded, so a
    candidate always scores the same), by the user's ``evaluate``; never below the candidate's
    accuracy before recovery (``recover`` keeps the better weights). Trains the model in place.

    Example:
        >>> proxy = FinetuneProxy(ProxyInputs(model, x, evaluate, calib, train), steps=40)
        >>> proxy(apply_candidate(model, candidate, x, calib), candidate)
        0.9625
    """

    def __init__(self, inputs: ProxyInputs, steps: int = FINETUNE_STEPS):
        if not inputs.train_batches:
            raise UserInputError("--proxy finetune: there are no training inputs to fine-tune on; pass "
                                 "train_batches=... (or use --proxy eval)")
        if len(inputs.calib_batches) == 0:
            raise ValueError("FinetuneProxy needs at least one calibration batch")
        self.inputs = inputs
        self.budget = RecoveryBudget(steps=steps)
        self._distillation: DistillationSet | None = None  # the teacher's logits, made on first use

    @property
    def distillation(self) -> DistillationSet:
        """The pooled training inputs and the teacher's logits on them, computed once."""
        if self._distillation is None:
            self._distillation = distillation_set(self.inputs.teacher, self.inputs.train_batches)
        return self._distillation

    def __call__(self, model: nn.Module, candidate: Candidate | None = None) -> float:
        i = self.inputs
        # with the evaluate: a candidate the short recovery would make worse keeps its weights
        report = recover(model, i.teacher, i.train_batches, i.calib_batches, budget=self.budget, evaluate=i.evaluate,
                         distillation=self.distillation)
        return report.accuracy_after
