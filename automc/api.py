"""The Python API: ``automc.search(...)`` → ``SearchResult`` (.pareto, .plot(), .export())."""

from __future__ import annotations

import contextlib
import platform
import warnings
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import optuna
import pandas as pd
import torch
import yaml
from torch import nn

from automc._progress import calibration_progress, progress_bar
from automc.accuracy import (
    DEFAULT_PROXY, AccuracyProxy, ProxyInputs, RecoveryBudget, check_proxy_name, make_proxy, recalibrate_bn, recover,
)
from automc.compress import apply_candidate, find_cells
from automc.deploy.export import ExportReport, export_model
from automc.deploy.lower import kernel_specs
from automc.deploy.relax_lowering import lower_to_relax
from automc.devices import device_runner
from automc.errors import UserInputError
from automc.latency.calibrate import calibrate_model, is_calibrated, predictor_for
from automc.latency.predictors import LatencyPredictor
from automc.latency.shipped import check_shipped, describe as describe_shipped
from automc.latency.store import MeasurementStore
from automc._host import host_description
from automc.model.introspect import LayerTable, introspect
from automc.model.source import MEMORY, ModelSource, load_model
from automc.profiles import HardwareProfile, load_profile
from automc.run_dir import RunInfo, new_run_dir
from automc.report import WrittenFigures, pareto_figure, write_run_figures
from automc.search.backends import SearchBackend, make_backend
from automc.search.fidelity import Promotion
from automc.search.objective import make_promoted_scorer, make_scorer
from automc.search.pareto import load_study, pareto_frame, trials_frame
from automc.search.driver import SearchSettings, run_search
from automc.search.seeds import calibration_candidates
from automc.search.worker import WorkerScorers
from automc.search.samplers import DEFAULT_SAMPLER, check_sampler_name
from automc.search.space import ResolvedSpace, check_min_accuracy, load_space, resolve_space
from automc.types import Candidate, KernelSpec


PROFILE_COPY = "profile.yaml"  # in a run directory: the profile an API caller passed as an object


def default_profile_name() -> str:
    """``x86-vnni`` where this host has AVX-512 VNNI, else ``x86-avx2`` (both measured here)."""
    if device_runner(load_profile("x86-vnni")).measurable_here:
        return "x86-vnni"
    return "x86-avx2"


@dataclass(frozen=True)
class SearchContext:
    """Everything needed to score, validate or export candidates of one run."""

    model: nn.Module
    example_input: torch.Tensor
    calib_batches: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]
    profile: HardwareProfile
    space: ResolvedSpace
    layers: LayerTable
    kernels: tuple[KernelSpec, ...]  # the uncompressed model's fused tasks on ``profile``
    train_batches: tuple[torch.Tensor, ...] = ()

    def proxy_inputs(self) -> ProxyInputs:
        return ProxyInputs(self.model, self.example_input, self.evaluate, self.calib_batches, self.train_batches)

    def scorers(self, proxy: AccuracyProxy, promoted: AccuracyProxy | None,
                predictor: LatencyPredictor) -> WorkerScorers:
        """A search's scorers for this model: every trial by ``proxy`` and ``predictor``, the
        promoted ones (multi-fidelity) by ``promoted``."""
        score = make_scorer(self.model, self.example_input, self.calib_batches, proxy, predictor, self.profile)
        promote = None if promoted is None else make_promoted_scorer(self.model, self.example_input,
                                                                     self.calib_batches, promoted)
        return WorkerScorers(score, promote)


@dataclass(frozen=True)
class SearchResult:
    """A finished (or resumed) search: its run directory and study. The model and data
    (``context``) are only built when something needs them (export, validate), so reading the
    front of a reopened run neither rebuilds nor retrains its model."""

    run_dir: Path
    study: optuna.Study
    build_context: Callable[[], SearchContext]

    @cached_property
    def context(self) -> SearchContext:
        return self.build_context()

    @property
    def pareto(self) -> pd.DataFrame:
        """The Pareto front (accuracy ↑, latency ms ↓, size bytes ↓), sorted by latency."""
        return pareto_frame(self.study)

    @property
    def trials(self) -> pd.DataFrame:
        return trials_frame(self.study)

    def plot(self):
        """The interactive plotly figure of the front (also written to ``pareto.html``)."""
        return pareto_figure(self.trials, self.pareto)

    def write_figures(self, png: bool = True) -> WrittenFigures:
        """(Re)write ``pareto``, ``layers`` and ``hypervolume`` ``.html`` (and ``.png`` with
        Chromium) into the run directory, from the stored trials."""
        return write_run_figures(self.run_dir, self.study, self.trials, self.pareto, png=png)

    def candidate(self, trial: int) -> Candidate:
        t = self.study.trials[trial]
        if "candidate" not in t.user_attrs:
            raise UserInputError(f"--trial {trial}: that trial has no candidate (state {t.state.name}); pick one from `automc pareto`")
        return Candidate.from_json(t.user_attrs["candidate"])

    def export(self, trial: int, out_dir: Path | str, finetune: bool | RecoveryBudget = False,
               progress: bool = False) -> ExportReport:
        """Export trial ``trial``: config, compressed model, TVM library (measured where possible).

        ``finetune`` (True for the default budget, or a :class:`RecoveryBudget`) first recovers
        the compressed model by distillation from the original on the run's training inputs;
        the library, ``model.pt2``, ``model.onnx`` and ``config.json`` then hold the recovered weights, and the
        report's ``recovery`` the accuracy before and after.

        >>> result.export(12, "out", finetune=RecoveryBudget(steps=300))  # doctest: +SKIP
        """
        if not 0 <= trial < len(self.study.trials):
            raise UserInputError(f"--trial {trial}: the run has trials 0..{len(self.study.trials) - 1}")
        t = self.study.trials[trial]
        if t.state != optuna.trial.TrialState.COMPLETE:
            why = t.user_attrs.get("error", "")
            raise UserInputError(f"--trial {trial}: that trial is {t.state.name}{f' ({why})' if why else ''}, "
                                 "nothing to export; pick a trial from `automc pareto`")
        ctx = self.context
        if finetune is not False and not ctx.train_batches:
            raise UserInputError("--finetune: this model has no training inputs to recover with; pass "
                                 "train_batches=... to automc.search (built-in models bring their own)")
        t = self.study.trials[trial]
        candidate = self.candidate(trial)
        compressed = apply_candidate(ctx.model, candidate, ctx.example_input, ctx.calib_batches)
        recalibrate_bn(compressed, ctx.calib_batches)
        config = {"trial": trial, "accuracy": t.values[0] if t.values else None}
        recovery = None
        if finetune is not False:
            budget = finetune if isinstance(finetune, RecoveryBudget) else RecoveryBudget()
            recovery = recover(compressed, ctx.model, ctx.train_batches, ctx.calib_batches, budget=budget,
                               evaluate=ctx.evaluate, progress=progress)
            config["recovery"] = asdict(recovery)
        predicted = t.values[1] if t.values else None
        report = export_model(compressed, ctx.example_input, candidate, ctx.profile, Path(out_dir), predicted,
                              t.user_attrs.get("latency_source", "calibrated"), config)
        return replace(report, recovery=recovery)


@dataclass(frozen=True)
class RunScorer:
    """A picklable recipe for a run's scorer, rebuilt from its ``run.json`` by a search backend's
    worker that cannot inherit the driver's (a Ray actor, possibly on another machine). Here, not
    in ``search``: it prepares the model as ``search`` does, and ``search`` sits below this module.

    ``info`` is the run's record; ``run_dir`` where its kept files (a ``.pt2`` program) are.
    """

    info: RunInfo
    run_dir: str

    def __call__(self) -> WorkerScorers:
        info = self.info
        built = load_model(ModelSource.from_run_info(info), run_dir=Path(self.run_dir))
        ctx = prepare(built.model, built.example_input, built.evaluate, info.profile_source, info.space_source,
                      built.calib_batches, built.train_batches, info.min_accuracy)
        store = MeasurementStore(ctx.profile)
        predictor = predictor_for(ctx.kernels, ctx.example_input, ctx.profile, store)
        expected = info.latency_source
        if expected is not None and predictor.source != expected:
            # Mixing calibrated and roofline latencies in one front would be silently wrong.
            raise RuntimeError(f"this worker's latencies would be '{predictor.source}', the search's are "
                               f"'{expected}': its measurement store {store.path} lacks the profile "
                               f"'{ctx.profile.name}' measurements; copy the driver's store there (same "
                               "AUTOMC_CACHE layout) or run `automc calibrate` on the driver first")
        promoted = make_proxy(info.promote, ctx.proxy_inputs()) if info.promote is not None else None
        return ctx.scorers(make_proxy(info.proxy, ctx.proxy_inputs()), promoted, predictor)


def prepare(model: nn.Module, example_input: torch.Tensor, evaluate: Callable[[nn.Module], float],
            profile: str | HardwareProfile, space: str, calib_batches: Sequence[torch.Tensor] | None,
            train_batches: Sequence[torch.Tensor] | None = None, min_accuracy: float | None = None) -> SearchContext:
    """Validate inputs and bind the space to the model (nothing is written): an operation the
    deploy path cannot lower is a UserInputError here, before any calibration. ``min_accuracy``,
    when given, replaces the space's accuracy floor."""
    prof = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    table = introspect(model, example_input)
    lower_to_relax(model.eval(), example_input, prof)
    resolved = resolve_space(load_space(space), table, prof, find_cells(model))
    if min_accuracy is not None:
        check_min_accuracy(min_accuracy, "--min-accuracy")
        resolved = replace(resolved, min_accuracy=float(min_accuracy))
    calib = tuple(calib_batches) if calib_batches else (example_input,)
    return SearchContext(model.eval(), example_input, calib, evaluate, prof, resolved, table,
                         tuple(kernel_specs(model.eval(), example_input, prof)), tuple(train_batches or ()))


def search(model: nn.Module, example_input: torch.Tensor, evaluate: Callable[[nn.Module], float], *,
           profile: str | HardwareProfile | None = None, space: str = "default", n_trials: int = 50,
           calib_batches: Sequence[torch.Tensor] | None = None, run_dir: Path | str | None = None,
           sampler: str = DEFAULT_SAMPLER, seed: int = 0, calibration_budget_s: float = 600.0,
           source: ModelSource | None = None, progress: bool = True,
           on_calibration: Callable[[int, int, object], None] | None = None, proxy: str = DEFAULT_PROXY,
           train_batches: Sequence[torch.Tensor] | None = None, min_accuracy: float | None = None,
           promote: str | None = None, backend: "str | SearchBackend" = "local", jobs: int | None = None,
           address: str | None = None) -> SearchResult:
    """Search per-layer compression of ``model`` for ``profile``; returns the run's result.

    ``evaluate(model) -> float`` is the user's accuracy (fraction 0–1) on validation data; one
    that raises or returns anything else fails that trial, with the reason, and the search goes
    on. ``calib_batches`` are input batches for activation ranges and BatchNorm recalibration;
    ``train_batches`` unlabelled training inputs, for the ``finetune`` proxy and for exports with
    recovery. ``proxy`` names the accuracy proxy (see ``automc.accuracy.PROXIES``);
    ``min_accuracy`` (a fraction) makes points below it infeasible, replacing the space's floor.
    ``promote`` names a second, costlier proxy (e.g. ``"finetune"``) that scores again the trials
    whose cheap ``proxy`` score would join the front: a multi-fidelity search, both numbers kept.
    ``progress`` draws the calibration and search progress bars (``False``: silent).
    ``backend`` runs the trials (see ``automc.search.backends.BACKENDS``): ``"local"`` in this
    process, or ``jobs`` forked processes; ``"ray"`` as actors on the Ray cluster at ``address``
    (``"auto"`` or ``"HOST:PORT"``; ``None`` starts Ray here), ``jobs`` at a time (default one
    per cluster CPU). A run resumes on any backend. Ray workers rebuild the model from the run's
    source, so an in-memory model searches locally only.
    ``source`` records how to rebuild the model for later commands (the CLI's built-in name,
    factory or program); by default the model is an in-memory one, reopened with
    ``open_run(RUN, model=..., example_input=..., evaluate=...)``.
    Calibrates the profile's kernels first when they can be measured (on this host, or on an rpc
    profile's device through its tracker); measurements are stored and reused.

    >>> result = automc.search(model, x, evaluate, profile="x86-avx2", n_trials=40)  # doctest: +SKIP
    >>> result.pareto[["trial", "accuracy", "latency_ms", "size_bytes"]]  # doctest: +SKIP
    """
    check_sampler_name(sampler)  # before calibration, which can take minutes
    check_proxy_name(proxy)
    if promote is not None and check_proxy_name(promote, "--promote") == proxy:
        raise UserInputError(f"--promote: '{promote}' is the --proxy already; promote to a costlier proxy, "
                             "e.g. finetune")
    source = source or ModelSource(MEMORY, "custom")
    owned = isinstance(backend, str)
    trials_on = make_backend(backend, jobs, address) if isinstance(backend, str) else backend
    if trials_on.name != "local" and source.kind == MEMORY:
        raise UserInputError(f"--backend {trials_on.name}: the model lives in this process only; its workers "
                             "rebuild it from a built-in name, a factory file.py:function or a .pt2 program")
    trials_on.connect()  # an unreachable cluster is refused before anything is calibrated or written
    try:
        return _search(model, example_input, evaluate, profile, space, n_trials, calib_batches, run_dir, sampler,
                       seed, calibration_budget_s, source, progress, on_calibration, proxy, train_batches,
                       min_accuracy, promote, trials_on)
    finally:
        if owned:
            trials_on.close()


def _search(model, example_input, evaluate, profile, space, n_trials, calib_batches, run_dir, sampler, seed,
            calibration_budget_s, source, progress, on_calibration, proxy, train_batches, min_accuracy, promote,
            backend: SearchBackend) -> SearchResult:
    """``search`` once its backend is connected (the arguments as there)."""
    ctx = prepare(model, example_input, evaluate, profile or default_profile_name(), space, calib_batches,
                  train_batches, min_accuracy)
    left = ctx.layers.left_as_is
    if left:
        warnings.warn("left as they are: " + "; ".join(f"{name} ({why})" for name, why in left), stacklevel=3)
    # bad inputs (e.g. finetune without training inputs) fail here, before any work
    accuracy_proxy = make_proxy(proxy, ctx.proxy_inputs())
    promoted = make_proxy(promote, ctx.proxy_inputs()) if promote is not None else None
    run_dir = Path(run_dir) if run_dir else new_run_dir(source.label, ctx.profile.name)
    profile_source = (str((run_dir / PROFILE_COPY).resolve()) if isinstance(profile, HardwareProfile)
                      else profile or ctx.profile.name)
    info = RunInfo(model=source.label, model_source=source.to_dict(), profile=ctx.profile.name,
                   space=ctx.space.name, space_source=space, profile_source=profile_source, n_trials=n_trials,
                   proxy=proxy, promote=promote, min_accuracy=ctx.space.min_accuracy, sampler=sampler, seed=seed,
                   input_shape=tuple(example_input.shape), host=host_description(),
                   python=platform.python_version(), torch=torch.__version__, optuna=optuna.__version__)
    info.check_resumable(run_dir)
    # The first search of a model on a host calibrates it within the budget; later searches reuse
    # the store as it is (`automc calibrate` extends it), so a warm search starts at once.
    # shipped measurements count only where this host runs them at their speed (a check, once)
    shipped = check_shipped(ctx.profile)
    info = replace(info, shipped_measurements=describe_shipped(shipped))
    if shipped is not None and not shipped.accepted:
        warnings.warn(info.shipped_measurements, stacklevel=3)
    store = MeasurementStore(ctx.profile)
    # measurable(): this host, or an rpc profile's device when its tracker lists it
    if not is_calibrated(ctx.kernels, example_input, store) and device_runner(ctx.profile).measurable():
        with contextlib.ExitStack() as stack:
            if on_calibration is None and progress:  # the CLI passes its own bar
                bar = stack.enter_context(progress_bar())
                on_calibration = calibration_progress(bar, calibration_budget_s)
            calibrate_model(ctx.model, example_input, *calibration_candidates(ctx.space), ctx.profile,
                            budget_s=calibration_budget_s, on_progress=on_calibration, store=store)
    predictor = predictor_for(ctx.kernels, example_input, ctx.profile, store)
    import tvm

    run_dir.mkdir(parents=True, exist_ok=True)
    info = replace(info, tvm=tvm.__version__, latency_source=predictor.source,
                   model_source=source.kept_in(run_dir).to_dict())  # a .pt2 and its data: copied in
    if isinstance(profile, HardwareProfile):  # a profile object: its YAML kept, so the run reopens
        (run_dir / PROFILE_COPY).write_text(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
    info.write(run_dir)
    scorers = ctx.scorers(accuracy_proxy, promoted, predictor)
    promotion = None if scorers.promote is None else Promotion(scorers.promote, low=proxy, high=str(promote))
    rebuild = RunScorer(info, str(run_dir.resolve())) if source.kind != MEMORY else None
    study = run_search(ctx.space, scorers.score, run_dir, SearchSettings(n_trials=n_trials, sampler=sampler, seed=seed,
                                                                  progress=progress), promotion, backend, rebuild)
    result = SearchResult(run_dir, study, lambda: ctx)
    result.write_figures()
    return result


def open_run(run_dir: Path | str, model: nn.Module | None = None, example_input: torch.Tensor | None = None,
             evaluate: Callable[[nn.Module], float] | None = None,
             calib_batches: Sequence[torch.Tensor] | None = None,
             train_batches: Sequence[torch.Tensor] | None = None) -> SearchResult:
    """Reopen any run (the CLI's ``pareto``/``export``/``validate``). Its model is rebuilt as
    ``run.json`` records (a built-in, a factory ``file.py:function``, a ``.pt2`` program) when
    first needed; a run of an in-memory API model needs it again: ``open_run(RUN, model=m,
    example_input=x, evaluate=f)`` (``calib_batches`` default to the example input;
    ``train_batches`` are needed to export with ``finetune``).

    >>> automc.open_run("runs/20261207-demo-cnn-x86-avx2").pareto  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    info = RunInfo.read(run_dir)
    source = ModelSource.from_run_info(info)
    if model is not None and (example_input is None or evaluate is None):
        raise UserInputError("open_run: with model=, give example_input= and evaluate= too")

    def build_context() -> SearchContext:
        if model is not None:
            given = (model, example_input, evaluate, calib_batches, train_batches)
        else:
            built = load_model(source, run_dir=run_dir)
            given = (built.model, built.example_input, built.evaluate, built.calib_batches, built.train_batches)
        return prepare(*given[:3], info.profile_source, info.space_source, *given[3:], info.min_accuracy)

    return SearchResult(run_dir, load_study(run_dir), build_context)
