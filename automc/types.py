"""Core data types shared by every stage: frozen dataclasses with a JSON round-trip.

Nothing here imports torch or TVM, so every package can depend on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Mapping

LayerKind = Literal["conv", "dwconv", "pwconv", "linear"]

FP32_BITS = 32


@dataclass(frozen=True)
class LayerInfo:
    """One compressible layer as it sits in the trained model.

    Shapes are NCHW (conv) or N×features (linear); ``macs`` counts multiply-accumulates
    for one forward pass at the example input's batch size.
    """

    name: str
    kind: LayerKind
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    params: int = 0
    macs: int = 0
    block: str | None = None  # the NAS cell (e.g. inverted-residual block) holding this layer


@dataclass(frozen=True)
class LayerChoice:
    """What to do to one layer.

    ``w_bits``/``a_bits``: 32 means float; ``prune``: fraction of output channels removed
    (0 ≤ prune < 1); ``rank``: fraction of full rank kept by SVD (1.0 = not factorized).
    """

    w_bits: int = FP32_BITS
    a_bits: int = FP32_BITS
    prune: float = 0.0
    rank: float = 1.0

    @property
    def quantized(self) -> bool:
        return self.w_bits < FP32_BITS or self.a_bits < FP32_BITS


@dataclass(frozen=True)
class Candidate:
    """A whole compression configuration: a choice per layer and a cell per block.

    Layers absent from ``layers`` are left as they are; blocks absent from ``cells`` keep
    their trained cell ("keep").
    """

    layers: Mapping[str, LayerChoice] = field(default_factory=dict)
    cells: Mapping[str, str] = field(default_factory=dict)

    def choice(self, layer: str) -> LayerChoice:
        return self.layers.get(layer, LayerChoice())

    def cell(self, block: str) -> str:
        return self.cells.get(block, "keep")

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": {k: asdict(v) for k, v in sorted(self.layers.items())},
            "cells": dict(sorted(self.cells.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Candidate":
        return cls(
            layers={k: LayerChoice(**v) for k, v in data.get("layers", {}).items()},
            cells=dict(data.get("cells", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Candidate":
        return cls.from_dict(json.loads(text))


GRAPH_OPS = ("bmm", "norm", "softmax", "pool", "layout", "eltwise")
# sets and a table, not property calls: the predictor reads these per kernel it prices
_GRAPH_OP_SET = frozenset(GRAPH_OPS)
_NO_PLANE = _GRAPH_OP_SET | {"dense"}  # ops whose out_hw is (1, 1)
_ELEM_BYTES = {"int8": 1, "float16": 2}  # else 4


@dataclass(frozen=True)
class KernelSpec:
    """The unit of latency: one fused task as TVM compiles it inside the deployed graph.

    ``op`` is "conv2d", "dense" or "quantize" (a float tensor of in_channels×height×width
    quantized on its own, because its producer feeds more than one consumer); ``dtype`` is
    the kernel's compute dtype ("float32", "int8": u8/s8 activations × s8 weights → s32 →
    float epilogue); ``act`` the fused activation (for a quantize, the elementwise torch call
    fused before it, e.g. "gelu", or "none"). The epilogue also holds what TVM fuses
    into it in a whole model: a ``residual`` add, and the quantization of the output for its
    one integer consumer (``out_dtype`` "uint8"/"int8", "int16" holding their values where
    the kernels multiply int16 (AVX2); "float32" when it stays float).
    Shapes are of the deployed (pruned / factorized) layer. ``blocked_in`` / ``blocked_out``:
    the task reads / writes activations in the blocked layout ``[N, C/16, H, W, 16]`` kept
    between packed kernels (``deploy.x86.blocked_shape``), else NCHW; the same conv runs a different
    kernel in each (a pack stage or none, vector or scalar). ``signed_in``: an int8 kernel's
    activations are s8, shifted to u8 in an input stage it always has (else u8).

    The rest of the graph's work comes as *graph ops* (``GRAPH_OPS``: "bmm" — a matmul
    without weights, e.g. attention — "norm", "softmax", "pool", "layout", "eltwise"), one per
    torch call that no layer's epilogue absorbs: ``in_channels`` / ``out_channels`` count
    the elements read / written; a bmm of [batch, height × in_channels] by
    [batch, in_channels × width] has width output columns. TVM fuses them in its own way, so
    they are priced together per family from whole-model measurements (see
    ``latency.predictors``), not timed one by one.
    """

    op: Literal["conv2d", "dense", "quantize", "bmm", "norm", "softmax", "pool", "layout", "eltwise"]
    batch: int
    in_channels: int
    out_channels: int
    height: int = 1
    width: int = 1
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dtype: str = "float32"
    act: str = "none"
    residual: bool = False
    out_dtype: str = "float32"
    blocked_in: bool = False
    blocked_out: bool = False
    signed_in: bool = False

    # Identified once, by a short string (``ident``, a plain attribute, public: the predictor
    # keys its dicts by it): a cold prediction looks each kernel up
    # three or four times, and hashing 17 fields anew each time was most of its 100 µs budget.
    # A string rather than the field tuple: its hash is cached and it compares by
    # one memcmp, where a tuple compares field by field, a pointer chase each. Right after
    # extraction (whose forward pass evicts the predictor's dicts from the CPU caches), the 50
    # lookups of a MobileNetV2 candidate took 87 µs keyed by the spec, 36 by the string.
    # Formatted with %d, so a numpy or bool integer identifies as the int it equals. Pickled by
    # its fields (``__reduce__``), so a copy in another process (a Ray worker) hashes with its
    # own seed.
    def __post_init__(self) -> None:
        values = (self.op, self.batch, self.in_channels, self.out_channels, self.height, self.width,
                  self.kernel_size, self.stride, self.padding, self.groups, self.dtype, self.act, self.residual,
                  self.out_dtype, self.blocked_in, self.blocked_out, self.signed_in)
        ident = _KERNEL_IDENT % values
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "ident", ident)

    def __hash__(self) -> int:
        return hash(self.ident)  # a str caches its own hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, KernelSpec):
            return NotImplemented
        return self.ident == other.ident

    def __reduce__(self):
        return (KernelSpec, self._values)

    @property
    def key(self) -> str:
        """A stable string key for the measurement store."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def is_layer(self) -> bool:
        """A conv / dense / quantize task, timed on its own in calibration (else a graph op)."""
        return self.op not in _GRAPH_OP_SET

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.op in _NO_PLANE:
            return (1, 1)
        oh = (self.height + 2 * self.padding - self.kernel_size) // self.stride + 1
        ow = (self.width + 2 * self.padding - self.kernel_size) // self.stride + 1
        return (oh, ow)

    @property
    def macs(self) -> int:
        if self.op == "bmm":
            return self.batch * self.height * self.in_channels * self.width
        if self.op == "quantize" or not self.is_layer:
            return 0
        oh, ow = self.out_hw
        per_out = (self.in_channels // self.groups) * self.kernel_size * self.kernel_size
        return self.batch * self.out_channels * oh * ow * per_out

    @property
    def input_bytes(self) -> int:
        """Bytes of a layer kernel's input tensor, in its data type (bytes)."""
        return self.batch * self.in_channels * self.height * self.width * _ELEM_BYTES.get(self.dtype, 4)

    @property
    def output_bytes(self) -> int:
        """Bytes of a layer kernel's output tensor, in its ``out_dtype`` (bytes)."""
        oh, ow = self.out_hw
        return self.batch * self.out_channels * oh * ow * {"float32": 4, "int16": 2}.get(self.out_dtype, 1)

    @property
    def _elem_bytes(self) -> int:
        return _ELEM_BYTES.get(self.dtype, 4)

    @property
    def bytes_moved(self) -> int:
        """Bytes read and written once: input, weights, output (roofline numerator)."""
        elem = self._elem_bytes
        oh, ow = self.out_hw
        if self.op == "bmm":
            return 4 * self.batch * (self.height * self.in_channels + self.in_channels * self.width + self.height * self.width)
        if not self.is_layer:
            return 4 * (self.in_channels + self.out_channels)
        inp = self.input_bytes
        if self.op == "quantize":
            return inp * 4 // elem + inp // elem
        wgt = self.out_channels * (self.in_channels // self.groups) * self.kernel_size**2 * elem
        return inp + wgt + self.output_bytes * (2 if self.residual else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "KernelSpec":
        return cls(**data)

    @classmethod
    def from_key(cls, key: str) -> "KernelSpec":
        """The spec whose ``key`` this is."""
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for item in key.split("|"):
            name, value = item.split("=", 1)
            kind = types[name]
            values[name] = (value == "True") if kind in (bool, "bool") else int(value) if kind in (int, "int") else value
        return cls(**values)


# KernelSpec._values, formatted: integers and flags by %d, anything else (strings) by %s
_KERNEL_IDENT = " ".join("%d" if f.type in ("int", "bool") else "%s" for f in fields(KernelSpec))


@dataclass(frozen=True)
class Evaluation:
    """The scores of one candidate: accuracy (fraction, 0–1), latency (ms), size (bytes)."""

    accuracy: float
    latency_ms: float
    size_bytes: int
    latency_source: str = "calibrated"  # or "uncalibrated" (roofline estimate)
    extras: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
