"""The objective: one candidate → compressed model → (accuracy, predicted latency, size)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from automc.accuracy import AccuracyProxy
from automc.compress import QuantizedLayer, apply_candidate
from automc.deploy.lower import kernel_specs
from automc.latency.predictors import LatencyPredictor
from automc.profiles import HardwareProfile
from automc.types import Candidate, Evaluation


def model_size_bytes(model: nn.Module) -> int:
    """Deployed size (bytes): quantized weights at their true bit-width (packed) plus one fp32
    scale per output channel; every other parameter as fp32."""
    total_bits = 0
    quantized_weights = set()
    for module in model.modules():
        if isinstance(module, QuantizedLayer):
            w = module.inner.weight
            quantized_weights.add(id(w))
            total_bits += w.numel() * module.w_bits + w.shape[0] * 32
    for p in model.parameters():
        if id(p) not in quantized_weights:
            total_bits += p.numel() * 32
    return (total_bits + 7) // 8


def make_scorer(model: nn.Module, example_input: torch.Tensor, calib_batches: Sequence[torch.Tensor],
                accuracy_proxy: AccuracyProxy, predictor: LatencyPredictor,
                profile: HardwareProfile) -> Callable[[Candidate], Evaluation]:
    """The function the search calls per candidate. The accuracy proxy runs last: it may train
    the compressed copy, which must not change the latency and size measured before."""

    def score(candidate: Candidate) -> Evaluation:
        compressed = apply_candidate(model, candidate, example_input, calib_batches)
        kernels = kernel_specs(compressed, example_input, profile)
        latency = predictor.predict(kernels)
        size = model_size_bytes(compressed)
        accuracy = accuracy_proxy(compressed, candidate)
        return Evaluation(
            accuracy=accuracy, latency_ms=latency, size_bytes=size,
            latency_source=predictor.source,
            extras={"kernels": len(kernels), "int8_kernels": sum(k.dtype == "int8" for k in kernels),
                    "macs": sum(k.macs for k in kernels)},
        )

    return score


def make_promoted_scorer(model: nn.Module, example_input: torch.Tensor, calib_batches: Sequence[torch.Tensor],
                         accuracy_proxy: AccuracyProxy) -> Callable[[Candidate], float]:
    """The accuracy (fraction) of a candidate by a second, costlier proxy: what a promoted trial
    of a multi-fidelity search is scored with (``search.fidelity.Promotion``)."""

    def score(candidate: Candidate) -> float:
        return accuracy_proxy(apply_candidate(model, candidate, example_input, calib_batches), candidate)

    return score
