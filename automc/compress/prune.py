"""Structured pruning: really remove a Conv2d's output channels and everything coupled to them.

Torch-Pruning's dependency graph finds the coupled layers (BatchNorm, the depthwise conv fed by
the channels, the next conv's inputs, every layer tied to a residual add) and shrinks them all.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
import torch_pruning as tp
from torch import nn

from automc.compress._module_paths import get_module


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` once; the graph stays valid while channels are removed in place."""
    # tracing follows autograd's graph: it needs grad mode on and parameters that require
    # grad (a frozen model otherwise traces to an empty graph), whatever the caller set
    params = list(model.parameters())
    frozen = [p for p in params if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    finally:
        for p in frozen:
            p.requires_grad_(False)


def is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.groups == conv.in_channels


def n_to_remove(channels: int, fraction: float) -> int:
    """Channels to remove for ``fraction`` of ``channels``, rounded, leaving at least one."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    return min(int(round(fraction * channels)), channels - 1)


def l1_importance(conv: nn.Conv2d) -> torch.Tensor:
    """L1 norm of each output channel's weights, shape [out_channels]."""
    return conv.weight.detach().abs().flatten(1).sum(1)


def producer_of(graph: tp.DependencyGraph, dw: nn.Conv2d) -> nn.Conv2d | None:
    """The dense conv whose output channels feed depthwise conv ``dw`` (None if there is none).

    A depthwise conv's channels are its producer's channels, so a choice to prune it is
    carried out (and ranked) on the producer.
    """
    group = graph.get_pruning_group(dw, tp.prune_conv_out_channels, idxs=[0])
    for dep, _ in group:
        target = dep.target.module
        if (isinstance(target, nn.Conv2d) and not is_depthwise(target)
                and graph.is_out_channel_pruning_fn(dep.handler)):
            return target
    return None


def remove_out_channels(graph: tp.DependencyGraph, conv: nn.Conv2d, idxs: Iterable[int]) -> None:
    """Remove output channels ``idxs`` of ``conv`` and of every layer coupled to them, in place."""
    idxs = sorted(int(i) for i in idxs)
    if not idxs:
        return
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=idxs)
    if not graph.check_pruning_group(group):
        raise ValueError(f"torch-pruning refuses to remove {len(idxs)} channels of {conv}")
    group.prune()


def prune_conv(graph: tp.DependencyGraph, conv: nn.Conv2d, fraction: float) -> int:
    """Remove ``fraction`` of ``conv``'s output channels, lowest L1 first; returns how many.

    A depthwise conv is pruned through its producer (ranked by the producer's L1).
    """
    target = conv
    if is_depthwise(conv):
        target = producer_of(graph, conv) or conv
    n = n_to_remove(target.out_channels, fraction)
    if n == 0:
        return 0
    order = torch.argsort(l1_importance(target))
    remove_out_channels(graph, target, order[:n].tolist())
    return n


def apply_pruning(model: nn.Module, fractions: Mapping[str, float], example_input: torch.Tensor,
                  graph: tp.DependencyGraph | None = None) -> None:
    """Prune, in place, each Conv2d named in ``fractions`` by its fraction of output channels.

    Layers go in model order, so a layer coupled to an earlier one (e.g. by a residual add)
    sees its already-shrunk width. Names that no longer exist (inside a skipped block) are
    ignored; a name that is not a Conv2d raises ValueError.
    """
    todo = {name: f for name, f in fractions.items() if f > 0.0 and get_module(model, name) is not None}
    if not todo:
        return
    for name in todo:
        if not isinstance(get_module(model, name), nn.Conv2d):
            raise ValueError(f"layer '{name}': structured pruning applies to Conv2d layers only")
    graph = graph or build_graph(model, example_input)
    for name, module in model.named_modules():
        if name in todo:
            prune_conv(graph, module, todo[name])
