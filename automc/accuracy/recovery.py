"""Recovery: a compressed model distilled from its uncompressed teacher, quantization-aware.

Pruning, low-rank and cells only pay once the compressed model is trained a little. ``recover``
distils the teacher's temperature-softened logits into the student (KL divergence; unlabelled
inputs are enough), with straight-through gradients through the fake quantizers (the float
weights are a shadow that is rounded back onto its grid at the end), then re-estimates the
activation ranges and the BatchNorm statistics: the model ends in exactly the state
``compress.apply_candidate`` leaves it in, so that it lowers and deploys as any other candidate.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from automc.accuracy.base import checked_accuracy
from automc.accuracy.bn import recalibrate_bn
from automc.compress.quantize import QuantizedLayer, calibrate_ranges
from automc.errors import UserInputError

# The default budget: a demo-cnn candidate recovers within a minute on 2 shared cores.
DEFAULT_STEPS = 150
DEFAULT_BATCH = 32
DEFAULT_LR = 3e-3
DEFAULT_TEMPERATURE = 2.0


@dataclass(frozen=True)
class RecoveryBudget:
    """When training stops: after ``steps`` optimizer steps or ``seconds`` of training (wall
    time), whichever comes first; ``None`` leaves that limit out, but one must be set.

    Steps alone are reproducible (seeded); a time limit depends on the machine's load.

    >>> RecoveryBudget(steps=300)
    RecoveryBudget(steps=300, seconds=None)
    """

    steps: int | None = DEFAULT_STEPS
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.seconds is None:
            raise UserInputError("--steps/--budget: give a number of steps or a time budget for the recovery")
        if self.steps is not None and self.steps <= 0:
            raise UserInputError(f"--steps: {self.steps} recovery steps; give a positive number, e.g. --steps 200")
        if self.seconds is not None and not self.seconds > 0:
            raise UserInputError(f"--budget: {self.seconds} s of recovery; give a positive duration, e.g. --budget 1m")


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery did: optimizer ``steps`` taken, wall ``seconds`` in all (teacher
    targets, training, re-calibration, evaluations), the distillation loss averaged over the
    last steps, and the accuracy (fraction 0–1) before (after BatchNorm recalibration, as the
    ``eval`` proxy scores it) and after, when an ``evaluate`` was given. ``kept_before``: the
    recovered weights scored below the ones it started from, which were put back (so
    ``accuracy_after`` equals ``accuracy_before``)."""

    steps: int
    seconds: float
    final_loss: float
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    kept_before: bool = False


@dataclass(frozen=True)
class DistillationSet:
    """The unlabelled training inputs pooled into one tensor, and the teacher's logits on them
    (what every recovery from one teacher distils towards): computed once, reused by every
    candidate a search recovers."""

    inputs: torch.Tensor
    targets: torch.Tensor


def distillation_set(teacher: nn.Module, train_batches: Sequence[torch.Tensor],
                     batch_size: int = DEFAULT_BATCH) -> DistillationSet:
    """Pool ``train_batches`` and run ``teacher`` (eval mode, no grad) over them once."""
    inputs = _pool(train_batches)
    return DistillationSet(inputs, _teacher_logits(teacher, inputs, batch_size))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) on logits softened by ``temperature``, scaled by T² so that its
    gradients keep their size whatever T is (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1),
                    reduction="batchmean") * (t * t)


def recover(model: nn.Module, teacher: nn.Module, train_batches: Sequence[torch.Tensor],
            calib_batches: Sequence[torch.Tensor], *, budget: RecoveryBudget = RecoveryBudget(),
            evaluate: Callable[[nn.Module], float] | None = None, batch_size: int = DEFAULT_BATCH,
            lr: float = DEFAULT_LR, temperature: float = DEFAULT_TEMPERATURE, seed: int = 0,
            progress: bool = False, distillation: DistillationSet | None = None) -> RecoveryReport:
    """Distil ``teacher`` into the compressed ``model`` in place; returns what was done.

    ``train_batches`` are unlabelled input batches (held in memory and re-batched to
    ``batch_size`` in a seeded random order each epoch); ``calib_batches`` re-estimate the
    activation ranges and BatchNorm at the end. AdamW at ``lr`` with a cosine decay over the
    budget; parameters with ``requires_grad`` False stay frozen. ``teacher`` is only read, in
    eval mode; a ``distillation`` set made by :func:`distillation_set` from this teacher and
    these batches saves its forward passes when many candidates recover from one teacher. The
    model is left in eval mode, weights on their quantization grid. Given an ``evaluate``, recovery
    never makes the model worse: when it scores below its start (a candidate already at the
    teacher's accuracy can lose a little to a short distillation), the starting weights are put
    back.

    Example:
        >>> small = apply_candidate(builtin.model, candidate, builtin.example_input, builtin.calib_batches)
        >>> report = recover(small, builtin.model, builtin.train_batches, builtin.calib_batches,
        ...                  budget=RecoveryBudget(steps=150), evaluate=builtin.evaluate)
        >>> report.accuracy_before, report.accuracy_after
        (0.3925, 0.98)
    """
    if len(calib_batches) == 0:
        raise ValueError("recover needs at least one calibration batch")
    if batch_size <= 0 or lr <= 0 or temperature <= 0:
        raise ValueError(f"batch_size, lr and temperature must be positive, got {batch_size}, {lr}, {temperature}")
    start = time.perf_counter()
    if distillation is None:
        distillation = distillation_set(teacher, train_batches, batch_size)
    inputs, targets = distillation.inputs, distillation.targets
    before = start_state = None
    if evaluate is not None:
        recalibrate_bn(model, calib_batches)
        before = checked_accuracy(evaluate(model))
        start_state = copy.deepcopy(model.state_dict())  # activation ranges included (extra state)
    steps, losses = _distil(model, inputs, targets, budget, batch_size, lr, temperature, seed, progress)
    calibrate_ranges(model, calib_batches)
    recalibrate_bn(model, calib_batches)
    after = checked_accuracy(evaluate(model)) if evaluate is not None else None
    kept_before = after is not None and after < before
    if kept_before:
        model.load_state_dict(start_state)
        after = before
    tail = losses[-10:]
    return RecoveryReport(steps=steps, seconds=time.perf_counter() - start,
                          final_loss=sum(tail) / len(tail) if tail else float("nan"),
                          accuracy_before=before, accuracy_after=after, kept_before=kept_before)


def _pool(train_batches: Sequence[torch.Tensor]) -> torch.Tensor:
    if len(train_batches) == 0:
        raise UserInputError("train_batches: no training inputs to recover with; pass batches of unlabelled "
                             "training inputs (train_batches=...)")
    try:
        return torch.cat([b.detach() for b in train_batches])
    except RuntimeError as e:
        raise UserInputError(f"train_batches: batches differ in shape beyond the batch dimension ({e}); "
                             "pass batches of one input shape") from None


@torch.no_grad()
def _teacher_logits(teacher: nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    # Computed once: the teacher is fixed, so its targets need no forward pass per step.
    was_training = teacher.training
    teacher.eval()
    try:
        return torch.cat([teacher(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    finally:
        teacher.train(was_training)


def _distil(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, budget: RecoveryBudget,
            batch_size: int, lr: float, temperature: float, seed: int, progress: bool) -> tuple[int, list[float]]:
    """The training loop; returns (steps taken, loss per step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return 0, []
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLayer)]
    optimizer = torch.optim.AdamW(params, lr=lr)
    order = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, len(inputs))
    losses: list[float] = []
    bar = _Bar(budget) if progress else None
    # dropout draws from the global generator: seeded, and the caller's stream left as it was
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in quantized:
            layer.start_training()
        model.train()
        start = time.perf_counter()
        try:
            perm, pos = torch.randperm(len(inputs), generator=order), 0
            while True:
                done = _fraction_done(budget, len(losses), time.perf_counter() - start)
                if done >= 1.0:
                    break
                if pos + batch_size > len(perm):  # a new epoch; the incomplete tail is dropped
                    perm, pos = torch.randperm(len(inputs), generator=order), 0
                idx, pos = perm[pos:pos + batch_size], pos + batch_size
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * done))
                loss = distillation_loss(model(inputs[idx]), targets[idx], temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if bar is not None:
                    bar.update(len(losses), time.perf_counter() - start, losses[-1])
        finally:
            if bar is not None:
                bar.stop()
            for layer in quantized:
                layer.end_training()
            model.eval()
    return len(losses), losses


def _fraction_done(budget: RecoveryBudget, steps: int, seconds: float) -> float:
    """How much of the budget is spent (0..1): the further of the step and the time limit."""
    parts = []
    if budget.steps is not None:
        parts.append(steps / budget.steps)
    if budget.seconds is not None:
        parts.append(seconds / budget.seconds)
    return max(parts)


class _Bar:
    """A rich progress bar over the budget's steps (or seconds when only time is limited)."""

    def __init__(self, budget: RecoveryBudget) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._by_steps = budget.steps is not None
        total = budget.steps if self._by_steps else budget.seconds
        unit = "steps" if self._by_steps else "s"
        done = f"{{task.completed:.0f}}/{{task.total:.0f}} {unit} · KD loss {{task.fields[loss]}}"
        self._progress = Progress(TextColumn("[bold]recovery"), BarColumn(), TextColumn(done), TimeElapsedColumn())
        self._task = self._progress.add_task("recovery", total=total, loss="–")
        self._progress.start()

    def update(self, steps: int, seconds: float, loss: float) -> None:
        done = steps if self._by_steps else seconds
        self._progress.update(self._task, completed=done, loss=f"{loss:.4f}")

    def stop(self) -> None:
        self._progress.stop()
