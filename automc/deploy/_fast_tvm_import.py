"""Make TVMScript's import-time parsing affordable.

Every ``@T.prim_func`` in ``tvm.s_tir.tensor_intrin`` (imported by MetaSchedule) calls
``inspect.stack()``, and ``inspect.getmodule`` scans all of ``sys.modules`` for each frame it
cannot place: measured here, importing MetaSchedule took 45 s without torch and 63–187 s with
torch loaded, in the main process and again in every builder worker. Placing objects by their
``__module__`` instead of scanning brings it to a few seconds.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import Iterator

_original_getmodule = inspect.getmodule


def _getmodule_by_name(obj, _filename=None):
    if inspect.ismodule(obj):
        return obj
    name = getattr(obj, "__module__", None)
    if isinstance(name, str):
        return sys.modules.get(name)
    return None  # frames and code objects: their source file is enough for TVMScript


@contextlib.contextmanager
def fast_inspect() -> Iterator[None]:
    """Within the block, ``inspect.getmodule`` looks objects up by ``__module__`` only."""
    inspect.getmodule = _getmodule_by_name
    try:
        yield
    finally:
        inspect.getmodule = _original_getmodule


def import_meta_schedule():
    """``tvm.s_tir.meta_schedule`` with its tensor intrinsics, imported the fast way."""
    with fast_inspect():
        import tvm.s_tir.tensor_intrin  # noqa: F401  (registers intrinsics MetaSchedule uses)
        from tvm.s_tir import meta_schedule

    return meta_schedule


def worker_initializer() -> None:
    """Builder/runner worker processes are ours alone: patch for their whole life."""
    inspect.getmodule = _getmodule_by_name
