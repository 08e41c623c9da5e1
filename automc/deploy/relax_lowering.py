"""torch.export → Relax, then rewrite the integer layers' conv2d / matmul into int8 kernels."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import nn

from automc.compress.quantize import weight_scales
from automc.deploy import x86
from automc.deploy.lower import IntegerLayer, activation_dtype, deploy_module
from automc.errors import UserInputError
from automc.profiles import HardwareProfile


def _quantize_weight(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer weights and per-channel scales on the grid compress.quantize trained against."""
    scale = weight_scales(torch.from_numpy(w), bits).numpy().astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -qmax, qmax).astype(np.int8)
    return q, scale


def _rewriter(by_param: dict[str, tuple[IntegerLayer | None, np.ndarray]], packed_funcs: dict | None,
              isa: x86.KernelIsa | None, convs: dict, profile: HardwareProfile | None):
    """The pattern and rewrite of conv2d / dense layers, keyed by their weight parameter's name
    (``IntegerLayer`` for an integer layer, None for a float one).

    With ``packed_funcs`` (a dict: x86 targets with the packed kernels' instruction set
    ``isa``) float convs (groups 1 or depthwise) and dense layers, and integer depthwise convs,
    call hand-scheduled packed TIR functions (``deploy.x86``); where ``isa`` has an int8 reduction
    (VNNI, AVX2) integer groups=1 convs and dense layers too. They are
    collected there as ``{GlobalVar: PrimFunc}`` for the caller to add to the module, and the
    convs among them in ``convs`` as ``{GlobalVar: x86.PackedConv}``. Other
    integer layers run the generic int32 conv2d / matmul; other float layers stay as they are.
    Integer layers quantize their input to ``lower.activation_dtype`` (int16 on AVX2)."""
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, wildcard

    x, w = wildcard(), wildcard()
    conv = is_op("relax.nn.conv2d")(x, w)
    mx, mw = wildcard(), wildcard()
    dense = is_op("relax.matmul")(mx, is_op("relax.permute_dims")(mw))
    pattern = conv | dense

    def quantize_input(data, layer: IntegerLayer, dtype: str):
        lo, hi = layer.a_range
        scaled = relax.op.multiply(data, relax.const(1.0 / layer.a_scale, "float32"))
        return relax.op.astype(relax.op.clip(relax.op.round(scaled), lo, hi), dtype)

    gvars: dict[tuple, tvm.ir.GlobalVar] = {}
    builder = relax.BlockBuilder()  # gives the GlobalVars the function type call_tir checks

    def call_packed(kind: str, key: tuple, make, args: list, out_shape: tuple[int, ...], out_dtype: str):
        # one PrimFunc per distinct shape; its name is what fused task names start from
        if key not in gvars:
            name = f"{kind}_packed{len(gvars)}"
            prim = make(name)
            gvars[key] = builder.add_func(prim, name)
            packed_funcs[gvars[key]] = prim
        return relax.call_tir(gvars[key], args, relax.TensorType(out_shape, out_dtype))

    def packed_conv(data, wt: np.ndarray, in_shape: tuple[int, ...], a, dtype: str):
        """The conv as a packed call, or None when the conv is not one the kernels run."""
        if (any(int(d) != 1 for d in a.dilation) or a.data_layout != "NCHW" or a.kernel_layout != "OIHW"
                or a.out_layout != "NCHW" or len(in_shape) != 4):
            return None
        oc, icg, kh, kw = wt.shape
        depthwise = a.groups == in_shape[1] == oc and icg == 1
        if not (a.groups == 1 and (dtype == "float32" or isa.int8_group is not None)) and not depthwise:
            return None
        strides, padding = tuple(int(v) for v in a.strides), tuple(int(v) for v in a.padding)
        padding = padding * 2 if len(padding) == 2 else padding  # (top, left, bottom, right)
        n, _, h, wd = in_shape
        out_shape = (n, oc, (h + padding[0] + padding[2] - kh) // strides[0] + 1,
                     (wd + padding[1] + padding[3] - kw) // strides[1] + 1)
        out_dtype = "float32" if dtype == "float32" else "int32"
        shifted = dtype == "int8" and isa.shifts_s8
        key = ("conv2d", in_shape, oc, (kh, kw), strides, padding, dtype, depthwise)
        if depthwise:
            def make(blocked_in: bool, blocked_out: bool, nm: str):
                return x86.depthwise_func(in_shape, (kh, kw), strides, padding, dtype, nm, blocked_in, blocked_out)
            args = [data, relax.const(x86.depthwise_weight(wt))]
        else:
            def make(blocked_in: bool, blocked_out: bool, nm: str):
                return x86.conv2d_func(in_shape, oc, (kh, kw), strides, padding, dtype, nm, blocked_in, blocked_out,
                                           isa)
            args = [data, relax.const(x86.pack_conv_weight(wt, isa))]
            args += [relax.const(x86.shift_compensation(wt))] if shifted else []
        call = call_packed("conv2d_dw" if depthwise else "conv2d", key, lambda nm: make(False, False, nm), args,
                           out_shape, out_dtype)
        convs[gvars[key]] = x86.PackedConv(make, functools.partial(x86.writes_blocked, depthwise, wd),
                                       2 if shifted and not depthwise else None)
        return call

    def packed_dense(data, wt: np.ndarray, in_shape: tuple[int, ...], dtype: str):
        """The matmul as a packed call on ``[M, K]`` (leading dims flattened)."""
        if dtype != "float32" and isa.int8_group is None:
            return None
        n, k = wt.shape
        m = int(np.prod(in_shape[:-1]))
        flat = data if len(in_shape) == 2 else relax.op.reshape(data, (m, k))
        args = [flat, relax.const(x86.pack_dense_weight(wt, isa))]
        args += [relax.const(x86.shift_compensation(wt))] if dtype == "int8" and isa.shifts_s8 else []
        out = call_packed("matmul", ("matmul", m, k, n, dtype), lambda nm: x86.dense_func(m, k, n, dtype, nm, isa),
                          args, (m, n), "float32" if dtype == "float32" else "int32")
        return out if len(in_shape) == 2 else relax.op.reshape(out, (*in_shape[:-1], n))

    def rewrite(expr, matches):
        is_conv = conv in matches
        weight = matches[w] if is_conv else matches[mw]
        name = getattr(weight, "name", None)
        if name not in by_param:
            return expr
        layer, wdata = by_param[name]
        source = matches[x] if is_conv else matches[mx]
        in_shape = tuple(int(d) for d in source.ty.shape.values)
        if layer is None:  # a float layer
            if packed_funcs is None or str(source.ty.dtype) != "float32":
                return expr
            wt = np.ascontiguousarray(wdata, np.float32)
            out = (packed_conv(source, wt, in_shape, expr.attrs, "float32") if is_conv
                   else packed_dense(source, wt, in_shape, "float32"))
            return expr if out is None else out
        wq, wscale = _quantize_weight(wdata, layer.w_bits)
        a_dtype = activation_dtype(layer, profile, is_conv and int(expr.attrs.groups) > 1)
        data = quantize_input(source, layer, a_dtype)
        acc = None
        if packed_funcs is not None:
            acc = (packed_conv(data, wq, in_shape, expr.attrs, a_dtype) if is_conv
                   else packed_dense(data, wq, in_shape, a_dtype))
        if a_dtype == "int16":  # the generic ops take operands of one integer type
            wq = wq.astype(np.int16)
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

    On an x86 profile with AVX2 or AVX-512 convs (groups 1, depthwise) and dense layers call
    hand-scheduled packed kernels (``deploy.x86``; integer groups=1 convs and dense layers where
    the instruction set has an int8 reduction: VNNI, AVX2);
    compile such a module with ``build.compile_module``, which schedules them (``tvm.compile``
    alone runs them correctly but with naive loops).
    Raises UserInputError when torch.export or the Relax frontend cannot take the model.
    """
    return relax_from_deploy(*deploy_module(compressed, profile), example_input, profile=profile)


def relax_from_deploy(model: nn.Module, integer: dict[str, IntegerLayer], example_input: torch.Tensor,
                      profile: HardwareProfile | None = None):
    """Export a deploy module (see ``deploy_module``) and rewrite its integer layers (without a
    ``profile``, into the generic int32 conv2d/matmul) and, on an AVX2 / AVX-512 ``profile``, its conv
    and dense layers into packed kernels (see ``_rewriter``)."""
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
    # every weight: the pattern only matches conv2d / dense ones (norm and embedding weights
    # never reach the rewrite)
    by_param: dict[str, tuple[IntegerLayer | None, np.ndarray]] = {}
    for spec in exported.graph_signature.input_specs:
        target = spec.target or ""
        if target.endswith(".weight") and target in state:
            by_param[spec.arg.name] = (integer.get(target.rsplit(".", 1)[0]), state[target].detach().numpy())
    func = mod["main"]
    isa = x86.kernel_isa(profile.target) if profile is not None else None
    packed_funcs = {} if isa is not None else None
    convs: dict = {}
    if integer or packed_funcs is not None:
        pattern, rewrite = _rewriter(by_param, packed_funcs, isa, convs, profile)
        func = rewrite_call(pattern, rewrite, func)
    mod["main"] = func
    for gvar, prim in (packed_funcs or {}).items():
        mod[gvar] = prim
    n_inputs = len(func.params) - len(params["main"])
    bound = {var.name: value for var, value in zip(func.params[n_inputs:], params["main"])}
    mod = relax.transform.BindParams("main", bound)(mod)
    mod = relax.transform.FoldConstant()(mod)
    return x86.keep_blocked(mod, convs) if convs else mod
