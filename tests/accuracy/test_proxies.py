"""Accuracy proxies looked up by name, each scoring real compressed demo models."""

from __future__ import annotations

import time

import pytest

from automc import UserInputError
from automc.accuracy import (
    PROXIES, AccuracyProxy, EvalProxy, FinetuneProxy, ProxyInputs, SensitivityProxy, make_proxy,
)
from automc.compress import apply_candidate
from automc.model.data import accuracy, load_digits_split
from automc.types import Candidate, LayerChoice

PRUNE = ("blocks.1.expand.0", LayerChoice(prune=0.5))
INT8 = ("head_conv.0", LayerChoice(8, 8))


@pytest.fixture(scope="module")
def inputs(demo) -> ProxyInputs:
    # these tests score a dozen models: a user's evaluate on 100 validation images, and two
    # calibration batches, keep each score well under a second
    data = load_digits_split()

    def evaluate(model) -> float:
        return accuracy(model, data.val_x[:100], data.val_y[:100])

    return ProxyInputs(demo.model, demo.example_input, evaluate, demo.calib_batches[:2], demo.train_batches[:6])


def _score(proxy, inputs: ProxyInputs, candidate: Candidate) -> float:
    return proxy(apply_candidate(inputs.teacher, candidate, inputs.example_input, inputs.calib_batches), candidate)


def test_proxies_are_looked_up_by_name(inputs):
    assert set(PROXIES) >= {"eval", "finetune", "sensitivity"}
    for name, cls in (("eval", EvalProxy), ("finetune", FinetuneProxy), ("sensitivity", SensitivityProxy)):
        proxy = make_proxy(name, inputs)
        assert isinstance(proxy, cls) and isinstance(proxy, AccuracyProxy)


def test_unknown_proxy_names_the_flag_and_the_choices(inputs):
    with pytest.raises(UserInputError, match=r"--proxy.*'nope'.*eval.*finetune.*sensitivity"):
        make_proxy("nope", inputs)


def test_finetune_without_training_inputs_is_a_user_error(demo):
    with pytest.raises(UserInputError, match="--proxy finetune.*train_batches"):
        make_proxy("finetune", ProxyInputs(demo.model, demo.example_input, demo.evaluate, demo.calib_batches))


def test_finetune_scores_a_pruned_candidate_above_eval(demo, inputs):
    # every expand conv at half width: damage the eval proxy sees plainly (one pruned layer alone
    # can stay at the teacher's accuracy, and then recovery has nothing to win: equal, not above)
    cand = Candidate({f"blocks.{i}.expand.0": LayerChoice(prune=0.5) for i in range(5)})
    assert _score(FinetuneProxy(inputs, steps=15), inputs, cand) > _score(make_proxy("eval", inputs), inputs, cand)


def test_sensitivity_is_additive_and_measures_each_delta_once(demo, inputs):
    proxy = make_proxy("sensitivity", inputs)
    eval_proxy = make_proxy("eval", inputs)
    fp32 = _score(eval_proxy, inputs, Candidate())
    d_prune = _score(eval_proxy, inputs, Candidate(dict([PRUNE]))) - fp32
    d_int8 = _score(eval_proxy, inputs, Candidate(dict([INT8]))) - fp32
    both = Candidate(dict([PRUNE, INT8]), cells={"blocks.2": "keep"})
    assert proxy(None, both) == pytest.approx(min(1.0, fp32 + d_prune + d_int8))
    assert proxy.measured == 2
    start = time.perf_counter()
    for _ in range(100):
        proxy(None, both)
    assert (time.perf_counter() - start) / 100 < 1e-3  # measured ~10 µs a candidate once warm
    assert proxy.measured == 2


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.1, "high"])
def test_an_evaluate_that_returns_no_accuracy_raises(demo, value):
    with pytest.raises(ValueError, match="not an accuracy"):
        EvalProxy(lambda m: value, demo.calib_batches[:1])(apply_candidate(demo.model, Candidate(),
                                                                           demo.example_input, demo.calib_batches[:1]))
