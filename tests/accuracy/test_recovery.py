"""Recovery: real distillation of compressed demo models, at test budgets of a few seconds."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from automc import RecoveryBudget, UserInputError, recover
from automc.accuracy import EvalProxy
from automc.compress import QuantizedLayer, apply_candidate
from automc.compress.quantize import calibrate_ranges
from automc.model.introspect import introspect
from automc.types import Candidate, LayerChoice


def _on_grid(layer: QuantizedLayer) -> bool:
    w = layer.inner.weight.detach()
    q = w / layer.w_scale.view(-1, *([1] * (w.dim() - 1)))
    return torch.allclose(q, q.round(), atol=1e-4)


@pytest.fixture(scope="module")
def pruned_half(demo) -> Candidate:
    """The default space's uniform 50% pruning: the expand and head convs."""
    names = [i.name for i in introspect(demo.model, demo.example_input)
             if i.name.endswith("expand.0") or i.name == "head_conv.0"]
    return Candidate({n: LayerChoice(prune=0.5) for n in names})


def test_recovery_regains_at_least_half_of_what_pruning_lost(demo, pruned_half):
    fp32 = EvalProxy(demo.evaluate, demo.calib_batches)(apply_candidate(demo.model, Candidate(), demo.example_input,
                                                                        demo.calib_batches))
    small = apply_candidate(demo.model, pruned_half, demo.example_input, demo.calib_batches)
    report = recover(small, demo.model, demo.train_batches, demo.calib_batches, budget=RecoveryBudget(steps=30),
                     evaluate=demo.evaluate)
    # measured: 0.3925 before (eval proxy), 0.8525 after these 30 steps, 0.98 after the default 150
    assert report.steps == 30
    assert report.accuracy_before < fp32 - 0.3
    assert report.accuracy_after - report.accuracy_before >= (fp32 - report.accuracy_before) / 2
    assert report.accuracy_after == demo.evaluate(small)  # the model itself is the recovered one
    assert not small.training and report.seconds > 0 and report.final_loss >= 0


def test_gradients_flow_through_the_fake_quantizers(demo):
    layer = QuantizedLayer(nn.Conv2d(4, 8, 3, padding=1), w_bits=4, a_bits=8)
    x = torch.randn(2, 4, 6, 6)
    calibrate_ranges(layer, [x])
    layer.start_training()
    x = (x * 1.5).requires_grad_()  # some inputs beyond the calibrated range: those are clamped
    layer(x).square().sum().backward()
    assert layer.inner.weight.grad is not None and layer.inner.weight.grad.abs().sum() > 0
    clamped = (x.detach().abs() > layer.a_scale * 127)
    assert clamped.any() and (~clamped).any()
    assert torch.all(x.grad[clamped] == 0) and x.grad[~clamped].abs().sum() > 0
    # the float shadow moves off the grid while training, and is put back on it at the end
    with torch.no_grad():
        layer.inner.weight.add_(1e-3)
    assert not _on_grid(layer)
    layer.end_training()
    assert _on_grid(layer) and not layer.trainable


def test_quantized_candidate_ends_on_its_grid_and_deterministic(demo):
    names = introspect(demo.model, demo.example_input).names
    cand = Candidate({n: LayerChoice(8, 8, prune=0.25 if n == "blocks.1.expand.0" else 0.0) for n in names})
    models = []
    for _ in range(2):
        small = apply_candidate(demo.model, cand, demo.example_input, demo.calib_batches)
        recover(small, demo.model, demo.train_batches[:4], demo.calib_batches[:1], budget=RecoveryBudget(steps=5))
        models.append(small)
    layers = [m for m in models[0].modules() if isinstance(m, QuantizedLayer)]
    assert layers and all(_on_grid(m) and m.calibrated and not m.trainable for m in layers)
    with torch.no_grad():  # seeded: the same candidate recovers to the same model
        torch.testing.assert_close(models[0](demo.example_input), models[1](demo.example_input), rtol=0, atol=0)
    before = apply_candidate(demo.model, cand, demo.example_input, demo.calib_batches)
    assert not torch.equal(before.stem[0].inner.weight, models[0].stem[0].inner.weight)  # it did train


def test_time_budget_stops_training(demo, pruned_half):
    small = apply_candidate(demo.model, pruned_half, demo.example_input, demo.calib_batches[:1])
    start = time.perf_counter()
    report = recover(small, demo.model, demo.train_batches[:2], demo.calib_batches[:1],
                     budget=RecoveryBudget(steps=None, seconds=1.0))
    assert 0 < report.steps and time.perf_counter() - start < 10


@pytest.mark.parametrize(("kwargs", "flag"), [({"steps": 0}, "--steps"), ({"steps": -3}, "--steps"),
                                              ({"seconds": 0.0}, "--budget"), ({"steps": None}, "--steps")])
def test_bad_budget_is_a_user_error_naming_the_flag(kwargs, flag):
    with pytest.raises(UserInputError, match=flag):
        RecoveryBudget(**kwargs)


def test_no_training_inputs_is_a_user_error(demo):
    with pytest.raises(UserInputError, match="train_batches"):
        recover(demo.model, demo.model, (), demo.calib_batches)


def test_a_recovery_that_scores_lower_keeps_the_weights_it_started_from(demo):
    """A candidate already at the teacher's accuracy, trained with a learning rate that wrecks it:
    the report says so, and the model is the one recovery started from, ranges and BN included."""
    model = apply_candidate(demo.model, Candidate({"head_conv.0": LayerChoice(w_bits=8, a_bits=8)}), demo.example_input,
                            demo.calib_batches)
    report = recover(model, demo.model, demo.train_batches, demo.calib_batches, budget=RecoveryBudget(steps=5),
                     evaluate=demo.evaluate, lr=5.0)
    assert report.kept_before and report.steps == 5
    assert report.accuracy_after == report.accuracy_before == demo.evaluate(model) > 0.9
    assert not model.training


def test_a_shared_distillation_set_recovers_exactly_as_a_fresh_one(demo, pruned_half):
    # a search recovers many candidates from one teacher: its logits are made once and reused
    from automc.accuracy.recovery import distillation_set

    shared = distillation_set(demo.model, demo.train_batches[:4])
    results = []
    for distillation in (None, shared, shared):
        small = apply_candidate(demo.model, pruned_half, demo.example_input, demo.calib_batches[:1])
        recover(small, demo.model, demo.train_batches[:4], demo.calib_batches[:1], budget=RecoveryBudget(steps=5),
                distillation=distillation)
        results.append(small.state_dict())
    for other in results[1:]:
        assert all(torch.equal(results[0][k], other[k]) for k in results[0] if isinstance(results[0][k], torch.Tensor))
