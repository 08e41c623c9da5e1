"""A profile's TVM target, and shared libraries written for its device."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from automc.profiles import HardwareProfile


def tvm_target(profile: HardwareProfile):
    """The profile's TVM Target (with its host, for cross-compiled and GPU targets)."""
    from tvm.target import Target

    if profile.host:
        return Target(dict(profile.target), host=dict(profile.host))
    return Target(dict(profile.target))


def _fcompile(cross_compiler: str | None):
    """The ``fcompile`` for ``export_library``: the cross compiler when given, else TVM's default."""
    if not cross_compiler:
        return None
    from tvm.support import cc

    return cc.cross_compiler(cross_compiler)


def export_library(module, path: str | Path, profile: HardwareProfile) -> Path:
    """Write a compiled module (Relax ``Executable`` or runtime ``Module``) as a shared library
    the profile's device can load: linked with ``profile.cross_compiler`` when it has one."""
    path = Path(path)
    module.export_library(str(path), fcompile=_fcompile(profile.cross_compiler))
    return path


def export_for_device(rt_mod, cross_compiler: str | None) -> str:
    """MetaSchedule builder export for a remote device: a shared library linked here, so the
    device's RPC server needs no compiler (MetaSchedule's default ships a .tar the server links
    itself). Runs in the builder's worker processes; returns the artifact's path."""
    path = os.path.join(tempfile.mkdtemp(prefix="automc-ms-"), "tvm_tmp_mod.so")
    rt_mod.export_library(path, fcompile=_fcompile(cross_compiler))
    return path
