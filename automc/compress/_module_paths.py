"""Get and replace submodules by their dotted path (``blocks.1.expand.0``)."""

from __future__ import annotations

from torch import nn


def get_module(model: nn.Module, path: str) -> nn.Module | None:
    """The submodule at ``path``, or None when the path no longer exists (e.g. a skipped block)."""
    module: nn.Module = model
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            return None
        module = children[part]
    return module


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at ``path`` by ``new`` (in place on ``model``)."""
    parent_path, _, leaf = path.rpartition(".")
    parent = get_module(model, parent_path) if parent_path else model
    if parent is None or leaf not in dict(parent.named_children()):
        raise KeyError(f"no submodule at '{path}'")
    setattr(parent, leaf, new)
