"""torch.export → Relax, then rewrite the integer layers' conv2d / matmul into int8 kernels."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from automc.compress.quantize import weight_scales
from automc.deploy.lower import IntegerLayer, deploy_module
from automc.errors import UserInputError
from automc.profiles import HardwareProfile


def _quantize_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights and per-channel scales on the grid compress.quantize trained against."""
    scale = weight_scales(torch.from_numpy(w), bits).numpy().astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(np.int8)
    return q, scale


def _rewriter(integer_by_param: dict[str, tuple[IntegerLayer, np.ndarray]]):
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    x, w = wildcard(), wildcard()
    conv = is_op("relax.nn.conv2d")(x, w)
    mx, mw = wildcard(), wildcard()
    dense = is_op("relax.matmul")(mx, is_op("relax.permute_dims")(mw))
    pattern = conv | dense

    def quantize_input(data, layer: IntegerLayer):
        lo, hi = layer.a_range
        scaled = relax.op.multiply(data, relax.const(1.0 / layer.a_scale, "float32"))
        return relax.op.astype(relax.op.clip(relax.op.round(scaled), lo, hi), layer.a_dtype)

    def rewrite(expr, matches):
        is_conv = conv in matches
        weight = matches[w] if is_conv else matches[mw]
        name = getattr(weight, "name", None)
        if name not in integer_by_param:
            return expr
        layer, wdata = integer_by_param[name]
        wq, wscale = _quantize_weight(wdata, layer.w_bits)
        data = quantize_input(matches[x] if is_conv else matches[mx], layer)
        if is_conv:
            a = expr.attrs
            acc = relax.op.nn.conv2d(data, relax.const(wq), strides=a.strides, padding=a.padding,
                                     dilation=a.dilation, groups=a.groups, out_dtype="int32")
            scale = (wscale * layer.a_scale).reshape(1, -1, 1, 1)
        else:
            acc = relax.op.matmul(data, relax.const(np.ascontiguousarray(wq.T)), out_dtype="int32")
            scale = wscale * layer.a_scale
        return relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale.astype(np.float32)))

    return pattern, rewrite


def lower_to_relax(compressed: nn.Module, example_input: torch.Tensor, profile: HardwareProfile):
    """The deployed model as a Relax IRModule with weights bound as constants.

    Raises UserInputError when torch.export or the Relax frontend cannot take the model.
    """
    return relax_from_deploy(*deploy_module(compressed, profile), example_input)


def relax_from_deploy(model: nn.Module, integer: dict[str, IntegerLayer], example_input: torch.Tensor):
    """Export a deploy module (see ``deploy_module``) and rewrite its integer layers."""
    from tvm import relax
    from tvm.relax.dpl import rewrite_call
    from tvm.relax.frontend.torch import from_exported_program

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model, (example_input,))
            mod = from_exported_program(exported, keep_params_as_input=True)
    except Exception as exc:  # the frontends raise many types; the user needs one line
        raise UserInputError(f"model: cannot export to TVM Relax ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                             "use layers torch.export and TVM's frontend support") from exc
    mod, params = relax.frontend.detach_params(mod)
    state = dict(model.state_dict())
    by_param: dict[str, tuple[IntegerLayer, np.ndarray]] = {}
    for spec in exported.graph_signature.input_specs:
        target = spec.target or ""
        owner = target.rsplit(".", 1)[0]
        if target.endswith(".weight") and owner in integer:
            by_param[spec.arg.name] = (integer[owner], state[target].detach().numpy())
    func = mod["main"]
    if by_param:
        pattern, rewrite = _rewriter(by_param)
        func = rewrite_call(pattern, rewrite, func)
    mod["main"] = func
    n_inputs = len(func.params) - len(params["main"])
    bound = {var.name: value for var, value in zip(func.params[n_inputs:], params["main"])}
    mod = relax.transform.BindParams("main", bound)(mod)
    mod = relax.transform.FoldConstant()(mod)
    return mod
