"""A saved ``torch.export`` program (``--model model.pt2``) as a model automc can compress, with
its data from a tensors file (``--data data.pt``).

An ExportedProgram holds its layers as ATen calls on named constants; compression works on
``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` modules. ``module_from_program`` lifts each
``aten.conv2d`` / ``aten.linear`` / ``aten.batch_norm`` call whose weights are the program's
parameters back into such a module, at the path its parameters had (``blocks.0.expand.0``), so
layer names, search spaces and exports read as for the original model. Every other operation
stays a graph node.

The data file is ``torch.save`` of a dict:

| key | what | required |
|---|---|---|
| ``calib`` | input tensor ``[N, ...]`` (activation ranges, BatchNorm) | yes |
| ``val_x``, ``val_y`` | validation inputs and integer labels (top-1 accuracy) | yes |
| ``train`` | unlabelled training inputs (recovery) | no |

Export with a dynamic batch dimension (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``,
traced on a batch of 2 or more): then data runs in batches of 64. A program exported at a fixed batch size runs its data in
batches of that size, and at batch 1 BatchNorm re-estimation after compression sees one sample
at a time, which costs accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import fx, nn

from automc.errors import UserInputError
from automc.model.data import accuracy
from automc.model.zoo import BuiltinModel

_CALIB_BATCHES = 4
_CALIB_BATCH = 64


def _attr(params: dict[str, nn.Parameter], node) -> nn.Parameter | None:
    """The program parameter a ``get_attr`` node reads (None for anything else)."""
    return params.get(node.target) if isinstance(node, fx.Node) and node.op == "get_attr" else None


def _owner(name: str) -> str:
    return name.rpartition(".")[0]


def _conv(params, buffers, args) -> nn.Module | None:
    x, w, b, stride, padding, dilation, groups = (list(args) + [None, 1, 0, 1, 1][len(args) - 2:])[:7]
    weight, bias = _attr(params, w), _attr(params, b) if b is not None else None
    if weight is None or weight.dim() != 4 or (b is not None and bias is None):
        return None
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride,
                     padding=padding, dilation=dilation, groups=groups, bias=bias is not None)
    conv.weight = weight
    if bias is not None:
        conv.bias = bias
    return conv


def _linear(params, buffers, args) -> nn.Module | None:
    x, w, b = (list(args) + [None])[:3]
    weight, bias = _attr(params, w), _attr(params, b) if b is not None else None
    if weight is None or (b is not None and bias is None):
        return None
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    linear.weight = weight
    if bias is not None:
        linear.bias = bias
    return linear


def _batch_norm(params, buffers, args) -> nn.Module | None:
    x, w, b, mean, var, training, momentum, eps = list(args)[:8]
    weight, bias = _attr(params, w), _attr(params, b)
    if weight is None or bias is None or getattr(mean, "target", None) not in buffers or training:
        return None
    bn = nn.BatchNorm2d(weight.shape[0], eps=eps, momentum=momentum)
    bn.weight, bn.bias = weight, bias
    bn.running_mean.copy_(buffers[mean.target])
    bn.running_var.copy_(buffers[var.target])
    return bn


_LIFTS = {torch.ops.aten.conv2d.default: _conv, torch.ops.aten.linear.default: _linear,
          torch.ops.aten.batch_norm.default: _batch_norm}


def module_from_program(program: torch.export.ExportedProgram) -> nn.Module:
    """The program as an ``nn.Module`` whose conv, linear and batch-norm calls are modules again
    (named after their parameters); outputs equal the program's."""
    gm = program.module()
    # read once: lifting moves parameters into new modules but never renames one
    params, buffers = dict(gm.named_parameters()), dict(gm.named_buffers())
    for node in list(gm.graph.nodes):
        lift = _LIFTS.get(node.target) if node.op == "call_function" else None
        module = lift(params, buffers, node.args) if lift else None
        if module is None:
            continue
        path = _owner(node.args[1].target)
        gm.add_submodule(path, module)  # replaces the holder of those parameters
        with gm.graph.inserting_before(node):
            call = gm.graph.call_module(path, (node.args[0],))
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    # a plain GraphModule: the program's own refuses .train()/.eval(), which compression needs
    return fx.GraphModule(gm, gm.graph).eval()


def _program_input_shape(program: torch.export.ExportedProgram) -> tuple[int, ...] | None:
    """The shape of the program's input where its batch is fixed (None: dynamic batch)."""
    user_inputs = [n for n in program.graph.nodes if n.op == "placeholder"
                   and n.name in program.graph_signature.user_inputs]
    val = user_inputs[0].meta.get("val") if user_inputs else None
    if val is None or not all(isinstance(d, int) for d in val.shape):
        return None
    return tuple(val.shape)


def load_exported(model_path: str, data_path: str) -> BuiltinModel:
    """``--model model.pt2 --data data.pt`` as a model with its data and top-1 evaluate."""
    where = f"--model {model_path}"
    try:
        program = torch.export.load(model_path)
    except Exception as exc:
        raise UserInputError(f"{where}: not a torch.export program that loads ({type(exc).__name__}: {exc}); "
                             "save one with torch.export.save(torch.export.export(model, (x,)), 'model.pt2')") from exc
    if not data_path:
        raise UserInputError(f"{where}: give its data with --data data.pt (keys calib, val_x, val_y, optional train)")
    try:
        data = torch.load(data_path)
    except Exception as exc:
        raise UserInputError(f"--data {data_path}: does not load with torch.load ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise UserInputError(f"--data {data_path}: must be a dict of tensors (keys calib, val_x, val_y, optional train)")
    missing = [k for k in ("calib", "val_x", "val_y") if not isinstance(data.get(k), torch.Tensor)]
    if missing:
        raise UserInputError(f"--data {data_path}: missing tensor(s) {', '.join(missing)}; it needs calib, val_x, "
                             "val_y (and optionally train)")
    model = module_from_program(program)
    fixed = _program_input_shape(program)
    for key in ("calib", "val_x", "train"):
        if key in data and fixed is not None and tuple(data[key].shape[1:]) != fixed[1:]:
            raise UserInputError(f"--data {data_path}: '{key}' holds samples of shape {list(data[key].shape[1:])}, "
                                 f"the program takes {list(fixed[1:])}")
    batch = fixed[0] if fixed else _CALIB_BATCH
    example = data["val_x"][:fixed[0] if fixed else 1].clone()
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        raise UserInputError(f"--data {data_path}: the program does not run on val_x of shape "
                             f"{list(example.shape)}: {type(exc).__name__}: {exc}") from exc
    calib = tuple(data["calib"][i:i + batch] for i in range(0, min(len(data["calib"]), batch * _CALIB_BATCHES), batch)
                  if i + batch <= len(data["calib"]))
    train = tuple(data["train"][i:i + batch] for i in range(0, len(data["train"]) - batch + 1, batch)) \
        if "train" in data else ()
    val_x, val_y = data["val_x"], data["val_y"]
    usable = len(val_y) // batch * batch  # a fixed batch: the remainder would not run
    return BuiltinModel(name=Path(model_path).stem, model=model, example_input=example, calib_batches=calib,
                        evaluate=lambda m: accuracy(m, val_x[:usable], val_y[:usable], batch_size=batch),
                        train_batches=train)
