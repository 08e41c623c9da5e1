"""The one compile path: compress a model by a candidate, lower it to Relax, tune the tasks the
profile's database lacks, and compile it for the profile's target."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import torch
from torch import nn

from automc.compress import apply_candidate
from automc.deploy.build import compile_module, open_database, task_calls, tune
from automc.deploy.lower import kernel_specs
from automc.deploy.relax_lowering import lower_to_relax
from automc.devices import TaskCall, tvm_target
from automc.profiles import HardwareProfile
from automc.types import Candidate, KernelSpec


@dataclass(frozen=True)
class CompiledCandidate:
    """A model as it deploys on ``profile``: the compressed torch model, its Relax module
    (weights bound) and the compiled executable; ``kernels`` (its ``KernelSpec`` list, the unit
    of latency) and ``tasks`` (the TVM tasks they run as) are worked out when first asked for."""

    compressed: nn.Module
    example_input: torch.Tensor
    profile: HardwareProfile
    module: object = field(repr=False)  # tvm.IRModule
    executable: object = field(repr=False)  # tvm.relax.Executable

    @cached_property
    def kernels(self) -> tuple[KernelSpec, ...]:
        """The fused tasks the compiled model runs, in order (``deploy.lower.kernel_specs``)."""
        return tuple(kernel_specs(self.compressed, self.example_input, self.profile))

    @cached_property
    def tasks(self) -> tuple[TaskCall, ...]:
        """The fused TVM tasks ``main`` calls, in order, with their arguments' shapes and dtypes
        (``build.task_calls``): what a device runner times one by one."""
        return tuple(task_calls(self.module))


def compile_candidate(model: nn.Module, candidate: Candidate | None, example_input: torch.Tensor,
                      profile: HardwareProfile, calib_batches: Sequence[torch.Tensor] | None = None,
                      database=None, tuned: bool = True, trials_per_task: int | None = None) -> CompiledCandidate:
    """Compress ``model`` by ``candidate``, lower it to Relax, tune and compile it for ``profile``.

    ``candidate`` None compiles ``model`` as it is (already compressed, e.g. then recovered, or
    the uncompressed baseline). ``calib_batches`` calibrate activation ranges (default: the
    example input alone, enough where only shapes matter, as for timing). ``database`` is the
    profile's MetaSchedule database (opened when not given); the tasks it lacks are tuned
    first, at ``trials_per_task`` MetaSchedule trials each (default: the profile's budget; 0
    tunes nothing and compiles with what the database holds). ``tuned`` False compiles with TVM's
    own default schedules, no database: for a target this host cannot time, where tuning has
    nothing to measure on.

    >>> compiled = compile_candidate(demo.model, candidate, demo.example_input, load_profile("x86-avx2"))  # doctest: +SKIP
    >>> len(compiled.kernels), compiled.executable  # doctest: +SKIP
    """
    if candidate is None:
        compressed = model
    else:
        calib = tuple(calib_batches) if calib_batches is not None else (example_input,)
        compressed = apply_candidate(model, candidate, example_input, calib)
    mod = lower_to_relax(compressed, example_input, profile)
    if not tuned:
        import tvm

        return CompiledCandidate(compressed, example_input, profile, mod, tvm.compile(mod, tvm_target(profile)))
    database = database if database is not None else open_database(profile)
    tune(mod, profile, trials_per_task=trials_per_task, database=database)
    return CompiledCandidate(compressed, example_input, profile, mod, compile_module(mod, profile, database))
