"""Keep activations in the blocked layout (``_packed.blocked_shape``) between packed kernels.

Each packed conv on NCHW tensors transposed its input into channel groups and its output
back (MobileNetV2 int8: 3.9 ms with those transposes, 3.1 without, 2 threads). Here a packed
conv writes the blocked layout when everything that reads its output takes it blocked: the
elementwise epilogue after it (scale, bias, activation, residual add, the next layer's
quantization), run on the blocked tensor as it is, and the packed convs reading that. Where
any reader needs NCHW (pooling, a reshape, a generic conv, the model's output) the conv
writes NCHW as before, so the blocked layout never costs a task of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from automc.deploy.x86 import _packed

# elementwise Relax ops whose blocked twin is the same op on blocked operands
_ELEMENTWISE = frozenset(f"relax.{name}" for name in (
    "astype", "multiply", "add", "subtract", "divide", "clip", "round", "maximum", "minimum", "floor", "ceil",
    "negative", "exp", "sigmoid", "tanh", "nn.relu", "nn.silu", "nn.gelu", "nn.gelu_tanh", "power", "sqrt",
    "abs", "where", "less", "greater", "equal"))


@dataclass(frozen=True)
class PackedConv:
    """How to rebuild one packed conv's PrimFunc for other layouts: ``make(blocked_in,
    blocked_out, name)``; ``writes_blocked(blocked_in)`` says whether it may write blocked;
    ``compensation`` is the index of its shift-compensation argument (s8 data), else None."""

    make: Callable
    writes_blocked: Callable[[bool], bool]
    compensation: int | None


def plan_blocked(order: Sequence[Hashable], kind: Mapping[Hashable, tuple | None],
                 readers: Mapping[Hashable, Sequence[Hashable]], outputs: Collection[Hashable]) -> set:
    """The values that run blocked, on any dataflow graph: ``order`` lists the values in
    execution order; ``kind[v]`` is ``("conv", data, writes_blocked)`` for a packed conv (its
    data value, and ``PackedConv.writes_blocked``), ``("eltwise", operands)`` for an
    elementwise op with a blocked twin (its tensor operands), else None; ``readers[v]`` the
    values computed from ``v``; ``outputs`` what the graph returns.

    A packed conv writes blocked only when no reader of its output, or of the elementwise
    ops after it, needs NCHW (else the NCHW copy would be a task of its own, and the conv's
    epilogue would stay apart from it); that is decided by shrinking the set of blocked
    convs until every blocked value's readers take it blocked. Lowering runs it on Relax
    bindings (``keep_blocked``); ``lower.kernel_specs`` on torch calls, to know each
    kernel's layouts without lowering."""
    allowed = {v for v in order if kind.get(v) is not None and kind[v][0] == "conv"}
    while True:
        blocked: set = set()
        for var in order:  # in order: operands are decided before their readers
            k = kind.get(var)
            if k is None:
                continue
            if k[0] == "conv" and var in allowed and k[2](k[1] in blocked):
                blocked.add(var)
            elif k[0] == "eltwise" and k[1] and all(o in blocked for o in k[1]):
                blocked.add(var)

        def reads_blocked(reader, var) -> bool:
            k = kind.get(reader)
            return reader in blocked or (k is not None and k[0] == "conv" and k[1] == var)

        stuck = {v for v in blocked if v in outputs or not all(reads_blocked(r, v) for r in readers.get(v, ()))}
        if not stuck:
            return blocked
        # the blocked convs upstream of a value some reader needs in NCHW write NCHW instead
        todo, seen = list(stuck), set()
        while todo:
            v = todo.pop()
            if v in seen or v not in blocked:
                continue
            seen.add(v)
            if kind[v][0] == "conv":
                allowed.discard(v)
            else:
                todo.extend(kind[v][1])


def _plan(bindings: list, convs: dict, call_tir, outputs: set) -> set:
    """The vars that get a blocked twin (``plan_blocked`` on ``main``'s bindings)."""
    import tvm
    from tvm import relax

    kind: dict = {}  # var -> ("conv", data var, writes_blocked) | ("eltwise", tensor operands) | None
    readers: dict = {}
    for binding in bindings:
        var, value = binding.var, binding.value
        for used in relax.analysis.free_vars(value):
            readers.setdefault(used, []).append(var)
        kind[var] = None
        if not isinstance(binding, relax.VarBinding) or _nchw(var) is None or not isinstance(value, relax.Call):
            continue
        if value.op.same_as(call_tir) and value.args[0] in convs:
            kind[var] = ("conv", value.args[1].fields[0], convs[value.args[0]].writes_blocked)
        elif isinstance(value.op, tvm.ir.Op) and value.op.name in _ELEMENTWISE:
            operands = []
            for arg in value.args:
                if isinstance(arg, tvm.ir.expr.Constant):
                    if hasattr(arg.value, "numpy") and _packed.block_constant(
                            arg.value.numpy(), _nchw(var)[0][1]) is None:
                        break
                elif isinstance(arg, relax.Var):
                    if _nchw(arg) is None or _nchw(arg)[0] != _nchw(var)[0]:
                        break
                    operands.append(arg)
            else:
                kind[var] = ("eltwise", operands)
    return plan_blocked([b.var for b in bindings], kind, readers, outputs)


def keep_blocked(mod, convs: dict):
    """``mod`` with blocked activations between the packed convs ``convs`` (``{GlobalVar:
    PackedConv}``, as the rewrite that made them recorded); constants must be bound."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    call_tir = tvm.ir.Op.get("relax.call_tir")
    main = mod["main"]
    bindings = [b for block in main.body.blocks for b in block.bindings]
    blocked = _plan(bindings, convs, call_tir, set(relax.analysis.free_vars(main.body.body)))
    if not blocked:
        return mod

    @mutator
    class Blocker(PyExprMutator):
        def __init__(self, mod) -> None:
            super().__init__(mod)
            self.twin: dict = {}  # NCHW var -> its blocked twin
            self.variants: dict = {}  # (GlobalVar, blocked_in, blocked_out) -> variant GlobalVar

        def visit_var_binding_(self, binding) -> None:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Call) and value.op.same_as(call_tir) and value.args[0] in convs:
                call = self.conv_call(value, var in blocked)
                if var in blocked:
                    self.twin[var] = self.builder_.emit(call, f"{var.name}_blocked")
                    return  # nothing reads the NCHW output (see _plan)
                if call is not None:
                    self.builder_.emit_normalized(relax.VarBinding(var, self.builder_.normalize(call)))
                    return
            if var in blocked:  # an elementwise op: its readers all take the twin
                self.twin[var] = self.builder_.emit(self.elementwise_twin(value), f"{var.name}_blocked")
            else:
                self.builder_.emit_normalized(binding)

        def conv_call(self, value, blocked_out: bool):
            """The packed conv reading its data blocked where it has a blocked twin and writing
            blocked when ``blocked_out``; None when it stays as it is."""
            gvar = value.args[0]
            conv = convs[gvar]
            args = list(value.args[1].fields)
            blocked_in = args[0] in self.twin
            if not blocked_in and not blocked_out:
                return None
            key = (gvar, blocked_in, blocked_out)
            if key not in self.variants:
                name = f"{gvar.name_hint}_{'b' if blocked_in else 'n'}{'b' if blocked_out else 'n'}"
                self.variants[key] = self.builder_.add_func(conv.make(blocked_in, blocked_out, name), name)
            if blocked_in:
                args[0] = self.twin[args[0]]
            shape, dtype = _nchw_of(value)
            if blocked_out and conv.compensation is not None:  # one value per padded output channel
                comp = args[conv.compensation].value.numpy()
                padded = np.zeros(-(-comp.size // _packed.BLOCK) * _packed.BLOCK, comp.dtype)
                padded[:comp.size] = comp
                args[conv.compensation] = relax.const(padded)
            out = relax.TensorType(_packed.blocked_shape(shape) if blocked_out else shape, dtype)
            return relax.call_tir(self.variants[key], args, out)

        def elementwise_twin(self, value):
            """The same op on the blocked twins of its operands (``_plan`` checked they exist)."""
            channels = _nchw_of(value)[0][1]
            args = []
            for arg in value.args:
                if isinstance(arg, tvm.ir.expr.Constant) and hasattr(arg.value, "numpy"):
                    const = _packed.block_constant(arg.value.numpy(), channels)
                    args.append(relax.const(const) if const.ndim else arg)
                elif isinstance(arg, relax.Var):
                    args.append(self.twin[arg])
                else:  # a scalar constant, or an attribute passed as a value (clip's bounds)
                    args.append(arg)
            return relax.Call(value.op, args, value.attrs, value.ty_args)

    blocker = Blocker(mod)
    new_main = blocker.visit_expr(main)
    out = blocker.builder_.get()
    out["main"] = new_main
    return relax.transform.DeadCodeElimination(["main"])(out)


def _nchw_of(value) -> tuple[tuple[int, ...], str]:
    ty = value.ty
    return tuple(int(d) for d in ty.shape.values), str(ty.dtype)


def _nchw(var) -> tuple[tuple[int, ...], str] | None:
    """(shape, dtype) of a static 4-D tensor var, else None."""
    from tvm import relax

    ty = var.ty
    if not isinstance(ty, relax.TensorType) or getattr(ty, "ndim", -1) != 4 or ty.shape is None:
        return None
    try:
        return tuple(int(d) for d in ty.shape.values), str(ty.dtype)
    except (TypeError, ValueError, AttributeError):  # a symbolic dimension
        return None
