"""torch.export → Relax, then rewrite the integer layers' conv2d / matmul into int8 kernels."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from automc.compress.quantize import weight_scales
from automc.deploy import _vnni
from automc.deploy.lower import IntegerLayer, deploy_module
from automc.errors import UserInputError
from automc.profiles import HardwareProfile


def _quantize_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights and per-channel scales on the grid compress.quantize trained against."""
    scale = weight_scales(torch.from_numpy(w), bits).numpy().astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(np.int8)
    return q, scale


def _rewriter(integer_by_param: dict[str, tuple[IntegerLayer, np.ndarray]], vnni_funcs: dict | None = None):
    """The pattern and rewrite of integer layers. With ``vnni_funcs`` (a dict, VNNI targets)
    groups=1 convs and dense layers call packed VNNI TIR functions (see ``_vnni``) instead,
    collected there as ``{GlobalVar: PrimFunc}`` for the caller to add to the module."""
    import tvm
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

    gvars: dict[tuple, tvm.ir.GlobalVar] = {}
    builder = relax.BlockBuilder()  # gives the GlobalVars the function type call_tir checks

    def call_vnni(kind: str, key: tuple, make, args: list, out_shape: tuple[int, ...]):
        # one PrimFunc per distinct shape; its name is what fused task names start from
        if key not in gvars:
            name = f"{kind}_vnni{len(gvars)}"
            prim = make(name)
            gvars[key] = builder.add_func(prim, name)
            vnni_funcs[gvars[key]] = prim
        return relax.call_tir(gvars[key], args, relax.TensorType(out_shape, "int32"))

    def vnni_conv(data, wq: np.ndarray, in_shape: tuple[int, ...], a, signed: bool):
        """The int32 conv as a packed VNNI call, or None when the conv is not one it runs."""
        if (a.groups != 1 or any(int(d) != 1 for d in a.dilation) or a.data_layout != "NCHW"
                or a.kernel_layout != "OIHW" or a.out_layout != "NCHW" or len(in_shape) != 4):
            return None
        strides, padding = tuple(int(v) for v in a.strides), tuple(int(v) for v in a.padding)
        padding = padding * 2 if len(padding) == 2 else padding  # (top, left, bottom, right)
        oc, _, kh, kw = wq.shape
        n, _, h, wd = in_shape
        out_shape = (n, oc, (h + padding[0] + padding[2] - kh) // strides[0] + 1,
                     (wd + padding[1] + padding[3] - kw) // strides[1] + 1)
        args = [data, relax.const(_vnni.pack_conv_weight(wq))]
        args += [relax.const(_vnni.shift_compensation(wq))] if signed else []
        key = ("conv2d", in_shape, oc, (kh, kw), strides, padding, signed)
        return call_vnni("conv2d", key, lambda nm: _vnni.conv2d_func(
            in_shape, oc, (kh, kw), strides, padding, signed, nm), args, out_shape)

    def vnni_dense(data, wq: np.ndarray, in_shape: tuple[int, ...], signed: bool):
        """The int32 matmul as a packed VNNI call on ``[M, K]`` (leading dims flattened)."""
        n, k = wq.shape
        m = int(np.prod(in_shape[:-1]))
        flat = data if len(in_shape) == 2 else relax.op.reshape(data, (m, k))
        args = [flat, relax.const(_vnni.pack_dense_weight(wq))]
        args += [relax.const(_vnni.shift_compensation(wq))] if signed else []
        out = call_vnni("matmul", ("matmul", m, k, n, signed),
                        lambda nm: _vnni.dense_func(m, k, n, signed, nm), args, (m, n))
        return out if len(in_shape) == 2 else relax.op.reshape(out, (*in_shape[:-1], n))

    def rewrite(expr, matches):
        is_conv = conv in matches
        weight = matches[w] if is_conv else matches[mw]
        name = getattr(weight, "name", None)
        if name not in integer_by_param:
            return expr
        layer, wdata = integer_by_param[name]
        wq, wscale = _quantize_weight(wdata, layer.w_bits)
        source = matches[x] if is_conv else matches[mx]
        data = quantize_input(source, layer)
        in_shape = tuple(int(d) for d in source.ty.shape.values)
        acc = None
        if vnni_funcs is not None:
            acc = (vnni_conv(data, wq, in_shape, expr.attrs, layer.a_signed) if is_conv
                   else vnni_dense(data, wq, in_shape, layer.a_signed))
        if acc is not None:
            scale = (wscale * layer.a_scale).reshape((1, -1, 1, 1) if is_conv else (-1,))
        elif is_conv:
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

    On a VNNI profile the integer convs (groups=1) and dense layers call packed VNNI kernels
    (``_vnni``); compile such a module with ``build.compile_module``, which schedules them
    (``tvm.compile`` alone runs them correctly but with naive loops).
    Raises UserInputError when torch.export or the Relax frontend cannot take the model.
    """
    return relax_from_deploy(*deploy_module(compressed, profile), example_input, profile=profile)


def relax_from_deploy(model: nn.Module, integer: dict[str, IntegerLayer], example_input: torch.Tensor,
                      profile: HardwareProfile | None = None):
    """Export a deploy module (see ``deploy_module``) and rewrite its integer layers; with a
    VNNI ``profile`` into VNNI kernels (without one, the generic int32 conv2d/matmul)."""
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
    vnni_funcs = {} if profile is not None and _vnni.has_vnni(profile.target) else None
    if by_param:
        pattern, rewrite = _rewriter(by_param, vnni_funcs)
        func = rewrite_call(pattern, rewrite, func)
    mod["main"] = func
    for gvar, prim in (vnni_funcs or {}).items():
        mod[gvar] = prim
    n_inputs = len(func.params) - len(params["main"])
    bound = {var.name: value for var, value in zip(func.params[n_inputs:], params["main"])}
    mod = relax.transform.BindParams("main", bound)(mod)
    mod = relax.transform.FoldConstant()(mod)
    return mod
