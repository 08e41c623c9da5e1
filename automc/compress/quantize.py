"""Fake quantization: per-output-channel symmetric weights, per-tensor zero-point-0 activations.

Activations always have zero point 0 (unsigned after a ReLU, signed symmetric otherwise): the
deploy path relies on it so that zero padding stays exactly zero in the integer kernel.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from automc.compress._module_paths import get_module, set_module
from automc.types import FP32_BITS

# Share of |x| kept inside the activation range; the rest (outliers) is clamped.
ACT_PERCENTILE = 99.99
_MAX_SAMPLE = 1 << 18  # percentile estimated on at most this many values per batch (speed)
_MIN_SCALE = 1e-12  # an all-zero channel still gets a usable (never divided-by-zero) scale


def _check_bits(bits: int, what: str) -> None:
    if not 2 <= bits <= FP32_BITS:
        raise ValueError(f"{what} must be in 2..{FP32_BITS}, got {bits}")


def weight_scales(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel scale max|w_c| / (2^(bits-1) - 1), shape [out]."""
    qmax = 2 ** (bits - 1) - 1
    return (weight.detach().abs().flatten(1).amax(1) / qmax).clamp_min(_MIN_SCALE)


def fake_quant_weight(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Round ``weight`` onto its per-channel symmetric grid; returns (quantized weight, scales)."""
    qmax = 2 ** (bits - 1) - 1
    scale = weight_scales(weight, bits)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    q = torch.clamp(torch.round(weight / scale.view(shape)), -qmax, qmax)
    return q * scale.view(shape), scale


def act_levels(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range (qmin, qmax) of an activation grid with zero point 0."""
    if signed:
        qmax = 2 ** (bits - 1) - 1
        return -qmax, qmax
    return 0, 2 ** bits - 1


def fake_quant_act(x: torch.Tensor, scale: float, bits: int, signed: bool) -> torch.Tensor:
    """Round-to-nearest onto the zero-point-0 grid ``scale`` × [qmin, qmax], clamped."""
    qmin, qmax = act_levels(bits, signed)
    return torch.clamp(torch.round(x / scale), qmin, qmax) * scale


def _straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` forward, identity backward: rounding has a zero gradient almost everywhere."""
    return x + (q - x).detach()


def fake_quant_weight_ste(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """:func:`fake_quant_weight` with a straight-through gradient to the float ``weight``; the
    per-channel scales follow the float weight (max |w| never clips, so the gradient is exact
    identity)."""
    return _straight_through(weight, fake_quant_weight(weight.detach(), bits)[0])


class _ActQuantSTE(torch.autograd.Function):
    """Round-to-grid forward; the gradient passes where the input lies inside the range."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float, qmin: int, qmax: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward((x >= qmin * scale) & (x <= qmax * scale))
        # in place on the fresh quotient: three passes over the activation, not six
        return torch.round(x / scale).clamp_(qmin, qmax).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quant_act_ste(x: torch.Tensor, scale: float, bits: int, signed: bool) -> torch.Tensor:
    """:func:`fake_quant_act` with a straight-through gradient inside the range and none where the
    input is clamped, as in quantization-aware training."""
    qmin, qmax = act_levels(bits, signed)
    return _ActQuantSTE.apply(x, scale, qmin, qmax)


class _RangeObserver:
    """Collects an input's minimum and a high percentile of |x| over calibration batches."""

    def __init__(self, percentile: float):
        self.percentile = percentile
        self.minimum = float("inf")
        self.amaxes: list[float] = []

    def observe(self, x: torch.Tensor) -> None:
        self.minimum = min(self.minimum, float(x.min()))
        flat = x.detach().flatten()
        if flat.numel() > _MAX_SAMPLE:
            # an odd stride walks every row/column of power-of-two feature maps, no aliasing
            stride = flat.numel() // _MAX_SAMPLE | 1
            flat = flat[::stride]
        flat = flat.abs().float()
        # the percentile as the smallest of the top (100 - percentile)% values: topk with a
        # small k is several times faster than kthvalue on a whole activation tensor
        n_top = max(1, min(flat.numel(), int(round(flat.numel() * (100.0 - self.percentile) / 100.0)) + 1))
        self.amaxes.append(float(flat.topk(n_top, sorted=False).values.min()))

    def amax(self) -> float:
        # per-batch percentiles averaged: stable across batch sizes, unlike one global max
        return sum(self.amaxes) / len(self.amaxes) if self.amaxes else 0.0


class QuantizedLayer(nn.Module):
    """A Conv2d / Linear with fake-quantized weights and (after calibration) inputs.

    ``inner.weight`` is overwritten in place (wrap a copy to keep the original) with its
    fake-quantized float value; ``w_scale`` [out] holds the per-channel scales (ones when
    ``w_bits`` is 32). The input is quantized with ``a_scale`` on a
    zero-point-0 grid: unsigned [0, 2^a_bits-1] when ``a_signed`` is False, else
    ±(2^(a_bits-1)-1); ``a_bits`` = 32 leaves it float.

    Example:
        >>> q = QuantizedLayer(nn.Conv2d(8, 16, 1), w_bits=8, a_bits=8)
        >>> calibrate_ranges(q, [torch.randn(4, 8, 5, 5)])
        >>> q(torch.randn(1, 8, 5, 5)).shape
        torch.Size([1, 16, 5, 5])
    """

    # a class default too, so that layers pickled before this attribute existed still load
    trainable: bool = False

    def __init__(self, inner: nn.Module, w_bits: int, a_bits: int):
        super().__init__()
        if not isinstance(inner, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"QuantizedLayer wraps Conv2d or Linear, got {type(inner).__name__}")
        _check_bits(w_bits, "w_bits")
        _check_bits(a_bits, "a_bits")
        self.inner = inner
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        out = inner.weight.shape[0]
        scale = torch.ones(out, dtype=inner.weight.dtype, device=inner.weight.device)
        if self.w_bits < FP32_BITS:
            q, scale = fake_quant_weight(inner.weight.detach(), self.w_bits)
            with torch.no_grad():
                inner.weight.copy_(q)
        self.register_buffer("w_scale", scale)
        self.a_scale: float = 1.0
        self.a_signed: bool = True
        self.calibrated: bool = self.a_bits >= FP32_BITS
        self.trainable: bool = False
        self._observer: _RangeObserver | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._observer is not None:
            self._observer.observe(x)
        elif self.a_bits < FP32_BITS:
            if not self.calibrated:
                raise RuntimeError("QuantizedLayer: activation range not calibrated; call compress.quantize.calibrate_ranges")
            quant = fake_quant_act_ste if self.trainable else fake_quant_act
            x = quant(x, self.a_scale, self.a_bits, self.a_signed)
        if not self.trainable or self.w_bits >= FP32_BITS:
            return self.inner(x)
        weight = fake_quant_weight_ste(self.inner.weight, self.w_bits)
        if isinstance(self.inner, nn.Conv2d):
            return self.inner._conv_forward(x, weight, self.inner.bias)
        return F.linear(x, weight, self.inner.bias)

    def start_training(self) -> None:
        """Quantization-aware training: ``inner.weight`` becomes the float shadow that the
        optimizer updates, quantized on the fly in ``forward`` with straight-through gradients
        (as are activations, at the fixed ``a_scale``). End with :meth:`end_training`."""
        self.trainable = True

    @torch.no_grad()
    def end_training(self) -> None:
        """Round the float shadow back onto its grid and recompute ``w_scale``: the state the
        deploy path reads. Activation ranges are stale afterwards: run :func:`calibrate_ranges`."""
        self.trainable = False
        if self.w_bits < FP32_BITS:
            q, scale = fake_quant_weight(self.inner.weight, self.w_bits)
            self.inner.weight.copy_(q)
            self.w_scale.copy_(scale)

    def start_observing(self, percentile: float = ACT_PERCENTILE) -> None:
        self._observer = _RangeObserver(percentile)

    def freeze(self) -> None:
        """Fix ``a_scale``/``a_signed`` from what was observed since ``start_observing``."""
        obs, self._observer = self._observer, None
        if obs is None or not obs.amaxes or self.a_bits >= FP32_BITS:
            return
        self.a_signed = obs.minimum < 0.0
        _, qmax = act_levels(self.a_bits, self.a_signed)
        self.a_scale = max(obs.amax(), _MIN_SCALE) / qmax
        self.calibrated = True

    # the activation range is plain attributes, so carry it through state_dict explicitly
    def get_extra_state(self) -> dict[str, Any]:
        return {"a_scale": self.a_scale, "a_signed": self.a_signed, "calibrated": self.calibrated}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.a_scale = float(state["a_scale"])
        self.a_signed = bool(state["a_signed"])
        self.calibrated = bool(state["calibrated"])

    def extra_repr(self) -> str:
        act = "float" if self.a_bits >= FP32_BITS else f"scale={self.a_scale:.4g}, {'signed' if self.a_signed else 'unsigned'}"
        return f"w_bits={self.w_bits}, a_bits={self.a_bits}, act=({act})"


@torch.no_grad()
def calibrate_ranges(model: nn.Module, calib_batches: Sequence[torch.Tensor], percentile: float = ACT_PERCENTILE) -> None:
    """Record every QuantizedLayer's input range on ``calib_batches`` (float inputs), then freeze.

    Runs in eval mode; the model's train/eval mode is restored afterwards.
    """
    layers = [m for m in model.modules() if isinstance(m, QuantizedLayer) and m.a_bits < FP32_BITS]
    if not layers:
        return
    if len(calib_batches) == 0:
        raise ValueError("activation quantization needs at least one calibration batch")
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.start_observing(percentile)
    try:
        for batch in calib_batches:
            model(batch)
    finally:
        for layer in layers:
            layer.freeze()
        model.train(was_training)


def apply_quantization(model: nn.Module, bits: Mapping[str, tuple[int, int]]) -> None:
    """Wrap, in place, each named layer (or both factors of a factorized one) in QuantizedLayer.

    ``bits`` maps layer name → (w_bits, a_bits); layers at 32/32 and names that no longer
    exist are skipped. Activation ranges still need :func:`calibrate_ranges`.
    """
    for name, (w_bits, a_bits) in bits.items():
        if w_bits >= FP32_BITS and a_bits >= FP32_BITS:
            continue
        layer = get_module(model, name)
        if layer is None:
            continue
        if isinstance(layer, nn.Sequential):  # a low-rank pair: quantize each factor
            for i, factor in enumerate(layer):
                layer[i] = QuantizedLayer(factor, w_bits, a_bits)
        elif isinstance(layer, (nn.Conv2d, nn.Linear)):
            set_module(model, name, QuantizedLayer(layer, w_bits, a_bits))
        else:
            raise ValueError(f"layer '{name}': cannot quantize {type(layer).__name__}")
