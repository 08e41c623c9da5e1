"""The lowering: a compressed nn.Module → the graph that will really run → a Relax IRModule.

This is the one place that decides what deploys. Calibration (single kernels), prediction
(kernel lists), validation and export all call it, so the predicted code is the code that ships:
BatchNorm is folded into its conv, pruned channels are gone (they were removed from the torch
model), low-rank layers are two layers, and quantized layers whose bit-widths the profile runs
as int8 become integer kernels: u8 (non-negative inputs) or s8 activations × s8 weights → s32
accumulate → float epilogue (scale, bias, activation).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from automc.compress.quantize import act_levels
from automc.deploy import x86
from automc.profiles import HardwareProfile
from automc.types import FP32_BITS, KernelSpec

# Bumped whenever the code a KernelSpec compiles to changes (schedules, layouts, intrinsics):
# stored measurements of another version describe code that no longer deploys and are ignored.
LOWERING_VERSION = 7  # 7: activations blocked [N, C/16, H, W, 16] between packed convs (deploy.x86)
# Where only the packed kernels of one instruction set changed, its version alone moves on, so
# the other instruction sets' stored (and shipped) measurements stay valid.
_ISA_LOWERING_VERSION = {"avx2": 8}  # 8: hand-scheduled AVX2 kernels instead of MetaSchedule's


def lowering_version(profile: HardwareProfile) -> int:
    """The lowering version of the code ``profile`` deploys (what stored measurements must
    carry to describe it): ``LOWERING_VERSION``, or its packed kernels' own."""
    isa = x86.kernel_isa(profile.target)
    return _ISA_LOWERING_VERSION.get(isa.name, LOWERING_VERSION) if isa is not None else LOWERING_VERSION


@dataclass(frozen=True)
class IntegerLayer:
    """How one layer runs as an integer kernel. Zero points are 0 (see compress.quantize)."""

    w_bits: int
    a_bits: int
    a_scale: float
    a_signed: bool

    @property
    def a_range(self) -> tuple[int, int]:
        return act_levels(self.a_bits, self.a_signed)

    @property
    def a_dtype(self) -> str:
        return "int8" if self.a_signed else "uint8"


def _is_quantized(module: nn.Module) -> bool:
    return hasattr(module, "inner") and hasattr(module, "w_bits") and hasattr(module, "a_scale")


def runs_integer(module: nn.Module, profile: HardwareProfile) -> bool:
    """True when ``module`` is a quantized layer the profile runs on an int8 kernel."""
    if not _is_quantized(module) or module.a_bits >= FP32_BITS or module.w_bits >= FP32_BITS:
        return False
    return profile.kernel_dtype.get(module.w_bits) == "int8" and profile.kernel_dtype.get(module.a_bits) == "int8"


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    # torch's fuse_conv_bn_eval, without its deepcopy of the conv: the fused conv's weight and
    # bias are new tensors, and it shares nothing else that anything writes
    fused = _clone_modules(conv).eval()
    fused.weight, fused.bias = torch.nn.utils.fusion.fuse_conv_bn_weights(
        conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
    return fused


def _conv_feeding(module: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, name) of the conv whose output is ``module``'s output: the module itself is
    handled by the caller; a Sequential (e.g. a low-rank pair) ends in it."""
    if isinstance(module, nn.Sequential) and len(module):
        name = list(module._modules)[-1]
        last = module._modules[name]
        if isinstance(last, nn.Conv2d) or (_is_quantized(last) and isinstance(last.inner, nn.Conv2d)):
            return module, name
        return _conv_feeding(last)
    return None


def _fold_into(parent: nn.Module, name: str, bn: nn.BatchNorm2d) -> None:
    child = parent._modules[name]
    if _is_quantized(child):
        child.inner = _fold_bn(child.inner, bn)
    else:
        parent._modules[name] = _fold_bn(child, bn)


def _clone_modules(module: nn.Module) -> nn.Module:
    """A copy of the module tree that shares its parameters and buffers with ``module``.

    Folding and unwrapping only replace entries of ``_modules`` (a folded conv is a new
    module), so the copy can be rewritten while ``module`` stays as it was; nothing here
    writes into a tensor. Against ``copy.deepcopy`` it skips copying every tensor and every
    module's hook dicts (a demo candidate: 7.7 ms by deepcopy, 1.9 shared; experiments/README.md)."""
    clone = copy.copy(module)
    state = clone.__dict__  # set directly: nn.Module.__setattr__ would look each name up in three dicts
    state["_parameters"] = dict(module._parameters)
    state["_buffers"] = dict(module._buffers)
    state["_modules"] = {name: None if child is None else _clone_modules(child) for name, child in module._modules.items()}
    return clone


def deploy_module(compressed: nn.Module, profile: HardwareProfile,
                  share_tensors: bool = False) -> tuple[nn.Module, dict[str, IntegerLayer]]:
    """The float module that is exported, and which of its layers run as integer kernels.

    Returns a copy where each conv→BatchNorm2d pair is folded into one conv (also when the conv
    is quantized or the last of a low-rank pair) and each quantized wrapper is replaced by its
    inner layer (weights on the quantization grid); the dict maps the inner layer's module path
    to its integer-kernel parameters. Quantized layers the profile cannot run as integers stay
    float (fake-quantized weights, float kernel). With ``share_tensors`` the copy's unfolded
    layers share their tensors with ``compressed`` (for reading the graph, not for exporting
    weights that a caller might change).
    """
    model = (_clone_modules(compressed) if share_tensors else copy.deepcopy(compressed)).eval()

    def fold(parent: nn.Module) -> None:
        names = list(parent._modules)
        for i, name in enumerate(names):
            child = parent._modules[name]
            nxt = parent._modules.get(names[i + 1]) if i + 1 < len(names) else None
            if isinstance(nxt, nn.BatchNorm2d):
                slot = (parent, name) if isinstance(child, nn.Conv2d) or (
                    _is_quantized(child) and isinstance(child.inner, nn.Conv2d)) else _conv_feeding(child)
                if slot is not None:
                    _fold_into(*slot, nxt)
                    parent._modules[names[i + 1]] = nn.Identity()
            if child is not None and not _is_quantized(child):
                fold(child)

    fold(model)
    integer: dict[str, IntegerLayer] = {}
    for path, module in list(model.named_modules()):
        for name, child in list(module._modules.items()):
            if child is not None and _is_quantized(child):
                full = f"{path}.{name}" if path else name
                if runs_integer(child, profile):
                    integer[full] = IntegerLayer(child.w_bits, child.a_bits, float(child.a_scale), bool(child.a_signed))
                module._modules[name] = child.inner
    return model, integer


_ACTS = {"hardtanh": "relu6", "relu6": "relu6", "relu": "relu"}
_ADDS = {"add", "__add__", "__radd__"}
# torch calls by the graph-op family they are priced in (see KernelSpec); others are "eltwise"
_FAMILIES = {
    **dict.fromkeys(("matmul", "bmm", "__matmul__", "baddbmm", "einsum", "scaled_dot_product_attention"), "bmm"),
    **dict.fromkeys(("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm"), "norm"),
    **dict.fromkeys(("softmax", "log_softmax", "_softmax"), "softmax"),
    **dict.fromkeys(("adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "mean", "sum", "amax"), "pool"),
    **dict.fromkeys(("reshape", "view", "flatten", "permute", "transpose", "contiguous", "__getitem__", "unsqueeze",
                     "squeeze", "expand", "cat", "stack", "chunk", "split", "t", "unflatten", "narrow"), "layout"),
}


class _Dataflow(TorchFunctionMode):
    """Every torch call of one forward pass, with its tensors: the graph TVM will fuse.

    The calls keep their tensors alive, so that ``id`` names one tensor for the whole pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, object]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            name = getattr(func, "__name__", "")
            self.calls.append((name, tuple(a for a in args if isinstance(a, torch.Tensor)), out))
        return out


# torch calls whose Relax ops have a blocked twin (``deploy.x86`` keeps them blocked)
_ELEMENTWISE_CALLS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "add", "add_", "__add__", "__radd__", "__iadd__", "mul",
    "__mul__", "__rmul__", "sub", "__sub__", "div", "__truediv__", "sigmoid", "tanh", "silu", "gelu", "clamp",
    "neg", "exp", "sqrt", "abs", "maximum", "minimum"})


def _blocked_tensors(calls: list, layer_of, integer: dict, outputs: set[int], profile: HardwareProfile) -> set[int]:
    """The ids of the tensors the lowering keeps in the blocked layout: ``x86.plan_blocked``
    on the torch calls, with the packed convs ``relax_lowering`` makes (AVX2 / AVX-512: fp32
    groups=1 and depthwise convs; with an int8 reduction, VNNI or AVX2, the int8 groups=1 ones
    too)."""
    isa = x86.kernel_isa(profile.target)
    if isa is None:
        return set()
    int8 = isa.int8_group is not None
    produced = {id(out) for _, _, out in calls}
    order: list[int] = []
    kind: dict[int, tuple | None] = {}
    readers: dict[int, list[int]] = {}
    for i, (name, tensors, out) in enumerate(calls):
        if any(out is t for t in tensors):  # in place: the same tensor, as Relax has one value
            continue
        key = id(out)
        order.append(key)
        for t in tensors:
            readers.setdefault(id(t), []).append(key)
        found = layer_of(i)
        if found is not None:
            path, mod = found
            x = tensors[0]
            if not isinstance(mod, nn.Conv2d) or x.dim() != 4 or any(d != 1 for d in mod.dilation):
                continue
            depthwise = mod.groups == x.shape[1] == mod.out_channels and mod.in_channels // mod.groups == 1
            if depthwise or (mod.groups == 1 and (path not in integer or int8)):
                kind[key] = ("conv", id(x), functools.partial(x86.writes_blocked, depthwise, x.shape[3]))
        elif name in _ELEMENTWISE_CALLS and out.dim() == 4:
            operands = []
            for t in tensors:
                if id(t) in produced:
                    if t.shape != out.shape:
                        break
                    operands.append(id(t))
                elif t.numel() != 1 and tuple(t.shape) not in ((1, out.shape[1], 1, 1), (out.shape[1], 1, 1)):
                    break  # a constant that does not broadcast per channel
            else:
                kind[key] = ("eltwise", operands)
    return x86.plan_blocked(order, kind, readers, outputs)


def _activation_quantization(layer: IntegerLayer | None, dtype: str) -> tuple | None:
    """What decides the Relax ops quantizing a layer's input (bits, scale, signedness, dtype)."""
    return None if layer is None else (layer.a_bits, layer.a_scale, layer.a_signed, dtype)


def activation_dtype(layer: IntegerLayer | None, profile: HardwareProfile | None, grouped: bool = False) -> str:
    """The dtype a layer's input is quantized to: float32 for a float layer; u8 / s8 for an
    integer one, except for a groups=1 conv or dense where the packed kernels multiply int16
    (AVX2: ``x86.KernelIsa.int8_group`` 2): int16 holding the same values, so the producer's
    epilogue writes what the kernel reads, with no widening pass of its own. A ``grouped``
    (depthwise) conv stages its input as float32 anyway: u8 / s8 is fewer bytes to read."""
    if layer is None:
        return "float32"
    isa = x86.kernel_isa(profile.target) if profile is not None else None
    return "int16" if isa is not None and isa.int8_group == 2 and not grouped else layer.a_dtype


def _grouped(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Conv2d) and mod.groups > 1


def _graph_op(name: str, tensors: tuple, out: torch.Tensor) -> KernelSpec:
    family = _FAMILIES.get(name, "eltwise")
    if family == "bmm" and len(tensors) >= 2 and tensors[0].dim() >= 2 and tensors[1].dim() >= 2:
        a, b = tensors[0], tensors[1]
        return KernelSpec(op="bmm", batch=int(np.prod(out.shape[:-2])) if out.dim() > 2 else 1,
                          in_channels=a.shape[-1], out_channels=out.numel(), height=a.shape[-2], width=b.shape[-1])
    return KernelSpec(op=family, batch=1, in_channels=sum(t.numel() for t in tensors), out_channels=out.numel())


def kernel_specs(compressed: nn.Module, example_input: torch.Tensor, profile: HardwareProfile) -> list[KernelSpec]:
    """The fused tasks the deployed model runs, in execution order, with deployed shapes and
    dtypes: conv / dense with their fused epilogues, quantizations left on their own, and a
    graph op (see ``KernelSpec``) for every other torch call that does work.

    One forward pass of the deploy module under a recording torch-function mode; the epilogue
    follows TVM's FuseOps: a conv (or a dense on 2-D rows) absorbs its activation and a
    residual add while each has one consumer, and the quantization of its output when its one
    consumer is an integer layer. A dense on 3-D tokens is reshaped around its matmul in
    Relax, which stops fusion there: its epilogue and the next quantization stay apart.
    """
    model, integer = deploy_module(compressed, profile, share_tensors=True)
    layers = {id(m.weight): (path, m) for path, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    flow = _Dataflow()
    with torch.no_grad(), flow:
        result = model(example_input)
    calls = flow.calls
    consumers: dict[int, list[int]] = {}
    producer: dict[int, int] = {}
    for i, (_, tensors, out) in enumerate(calls):
        for t in tensors:
            consumers.setdefault(id(t), []).append(i)
        producer.setdefault(id(out), i)

    def layer_of(i: int):
        name, tensors, _ = calls[i]
        if name in ("conv2d", "linear") and len(tensors) > 1 and id(tensors[1]) in layers:
            return layers[id(tensors[1])]
        return None

    outputs = {id(t) for t in (result if isinstance(result, (tuple, list)) else (result,)) if isinstance(t, torch.Tensor)}
    blocked = _blocked_tensors(calls, layer_of, integer, outputs, profile)
    fused_quantize: set[int] = set()  # tensors whose quantization a producer's epilogue absorbed
    into_quantize: set[int] = set()  # elementwise graph ops a standalone quantization absorbed
    absorbed: set[int] = set()  # calls fused into a layer's epilogue
    # (position, spec): a fused task runs where its last fused call stood, so a conv that takes
    # a residual add runs after the add's other producer (a ResNet shortcut), as in TVM
    placed: list[tuple[float, KernelSpec]] = []
    for i, (name, tensors, out) in enumerate(calls):
        found = layer_of(i)
        if found is None:
            if i not in absorbed and not any(out is t for t in tensors):
                placed.append((i, _graph_op(name, tensors, out)))
            continue
        path, mod = found
        layer = integer.get(path)
        x = tensors[0]
        if layer is not None and id(x) not in fused_quantize:
            rows = x.shape[0] if x.dim() == 4 else int(np.prod(x.shape[:-1]))
            channels = x.shape[1] if x.dim() == 4 else x.shape[-1]
            # an elementwise producer whose one consumer this is fuses into the quantization's
            # task (FuseOps), e.g. a transformer's GELU before an int8 fc2: timed inside it
            src = producer.get(id(x))
            fused_src = (src is not None and src not in absorbed and layer_of(src) is None
                         and _FAMILIES.get(calls[src][0], "eltwise") == "eltwise" and len(consumers[id(x)]) == 1)
            if fused_src:
                into_quantize.add(src)
            placed.append((i - 0.5, KernelSpec(op="quantize", batch=rows, in_channels=channels, out_channels=channels,
                                               height=x.shape[2] if x.dim() == 4 else 1,
                                               width=x.shape[3] if x.dim() == 4 else 1,
                                               out_dtype=activation_dtype(layer, profile, _grouped(mod)),
                                               act=calls[src][0] if fused_src else "none",
                                               blocked_in=id(x) in blocked, blocked_out=id(x) in blocked)))
        act, residual, t, last = "none", False, out, i
        fuses = isinstance(mod, nn.Conv2d) or x.dim() == 2
        while fuses and len(consumers.get(id(t), ())) == 1:
            j = consumers[id(t)][0]
            nxt_name, nxt_tensors, nxt_out = calls[j]
            if nxt_name in _ACTS and act == "none":  # before the add (MobileNet) or after it (ResNet)
                act = _ACTS[nxt_name]
            elif (nxt_name in _ADDS and not residual and j not in absorbed and len(nxt_tensors) == 2
                  and nxt_tensors[0].shape == nxt_tensors[1].shape):
                residual = True  # the add's first producer takes it; the other stays plain
            else:
                break
            absorbed.add(j)
            t, last = nxt_out, j
        users = consumers.get(id(t), [])
        out_dtype = "float32"
        # the output's quantization joins the epilogue when every consumer is an integer layer
        # quantizing it alike (TVM merges identical quantizations, e.g. a ResNet block's conv
        # and its shortcut conv reading one tensor, whatever their weights' bit-widths)
        quantized = {_activation_quantization(integer.get(layer_of(u)[0]), activation_dtype(
                         integer.get(layer_of(u)[0]), profile, _grouped(layer_of(u)[1])))
                     if layer_of(u) is not None and calls[u][1][0] is t else None for u in users}
        if fuses and users and len(quantized) == 1 and None not in quantized:
            out_dtype = next(iter(quantized))[3]
            fused_quantize.add(id(t))
        dtype = "int8" if layer is not None else "float32"
        if isinstance(mod, nn.Linear):
            placed.append((last, KernelSpec(op="dense", batch=int(np.prod(x.shape[:-1])), in_channels=mod.in_features,
                                    out_channels=mod.out_features, dtype=dtype, act=act, residual=residual,
                                    out_dtype=out_dtype, signed_in=layer is not None and layer.a_signed)))
        else:
            placed.append((last, KernelSpec(op="conv2d", batch=x.shape[0], in_channels=mod.in_channels,
                                    out_channels=mod.out_channels, height=x.shape[2], width=x.shape[3],
                                    kernel_size=mod.kernel_size[0], stride=mod.stride[0],
                                    padding=mod.padding[0], groups=mod.groups, dtype=dtype, act=act,
                                    residual=residual, out_dtype=out_dtype, blocked_in=id(x) in blocked,
                                    blocked_out=id(out) in blocked, signed_in=layer is not None and layer.a_signed)))
    return [spec for at, spec in sorted(placed, key=lambda p: p[0]) if spec.is_layer or at not in into_quantize]
