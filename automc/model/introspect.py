"""Find the compressible layers of any nn.Module by running it once on an example input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from automc.types import LayerInfo


@dataclass(frozen=True)
class LayerTable:
    """The compressible layers of a model, in execution order; ``left_as_is`` names the layers
    with weights that automc does not compress, each with why (``(name, reason)``)."""

    layers: tuple[LayerInfo, ...]
    left_as_is: tuple[tuple[str, str], ...] = ()

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)


def is_cell(module: nn.Module) -> bool:
    """A NAS cell is a block we know how to replace by cheaper variants (see compress.cells)."""
    return all(hasattr(module, a) for a in ("expand", "dw", "project", "use_res"))


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups > 1 and module.groups == module.in_channels:
        return "dwconv"
    if module.kernel_size == (1, 1) and module.groups == 1:
        return "pwconv"
    return "conv"


def introspect(model: nn.Module, example_input: torch.Tensor) -> LayerTable:
    """List ``model``'s Conv2d and Linear layers with shapes, params and MACs.

    Runs one forward pass on ``example_input`` (no gradients); the model is not changed.
    """
    cells = {name for name, m in model.named_modules() if name and is_cell(m)}
    records: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    order: list[str] = []
    hooks = []
    named = dict(model.named_modules())
    for name, module in named.items():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            def hook(mod, inp, out, name=name):
                if name not in records:
                    order.append(name)
                    records[name] = (tuple(inp[0].shape), tuple(out.shape))
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(example_input)
            model.train(was_training)
    finally:
        for h in hooks:
            h.remove()

    layers = []
    for name in order:
        module = named[name]
        in_shape, out_shape = records[name]
        block = next((c for c in sorted(cells, key=len, reverse=True) if name.startswith(c + ".")), None)
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, nn.Linear):
            rows = int(torch.tensor(out_shape[:-1]).prod()) if len(out_shape) > 1 else 1
            layers.append(LayerInfo(
                name=name, kind="linear", in_shape=in_shape, out_shape=out_shape,
                in_channels=module.in_features, out_channels=module.out_features,
                params=params, macs=rows * module.in_features * module.out_features, block=block))
        else:
            k = module.kernel_size[0]
            oh, ow = out_shape[2], out_shape[3]
            macs = out_shape[0] * module.out_channels * oh * ow * (module.in_channels // module.groups) * k * k
            layers.append(LayerInfo(
                name=name, kind=_kind(module), in_shape=in_shape, out_shape=out_shape,
                in_channels=module.in_channels, out_channels=module.out_channels,
                kernel_size=k, stride=module.stride[0], padding=module.padding[0] if isinstance(module.padding, tuple) else 0,
                groups=module.groups, params=params, macs=macs, block=block))
    return LayerTable(tuple(layers), _left_as_is(model, set(records)))


def _left_as_is(model: nn.Module, compressible: set[str]) -> tuple[tuple[str, str], ...]:
    """Layers holding a weight matrix or kernel that the compression operators do not take."""
    out = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if name in compressible or not isinstance(weight, torch.Tensor) or weight.dim() < 2:
            continue  # norms and biases are vectors; compressible layers are listed already
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            why = "not called on the example input"
        else:
            why = f"{type(module).__name__}: automc compresses Conv2d and Linear layers only"
        out.append((name, why))
    return tuple(out)
