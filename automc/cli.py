"""The ``automc`` command line: search, pareto, export, profiles, calibrate, validate."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from automc._progress import calibration_progress, progress_bar
from automc.errors import UserInputError

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Hardware-aware compression of trained PyTorch models.")
console = Console()


def _friendly(fn):
    """Bad input: one line on stderr naming the field and the fix, exit code 2; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserInputError as exc:
            Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)

    return wrapper


def parse_duration(text: str, option: str) -> float:
    """Seconds from "600", "600s", "30m" or "1.5h"; a UserInputError naming ``option`` otherwise."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserInputError(f"{option}: '{text}' is not a positive duration; give seconds (600) or minutes/hours "
                             "(30m, 1h)")
    return value


def _progress() -> Progress:
    return progress_bar(console)


def _print_front(result, measured: dict[int, float] | None = None) -> None:
    from automc.report import front_table, versus_int8

    front = result.pareto
    console.print(front_table(front, measured))
    line = versus_int8(result.trials, front)
    if line:
        console.print(line)


def _print_figures(run_dir: Path) -> None:
    from automc.report.files import chromium_path

    pictures = ", ".join(p.name for p in sorted(run_dir.glob("*.png")))
    console.print(f"interactive Pareto plot: {run_dir / 'pareto.html'}" + (f"; pictures: {pictures}" if pictures else ""))
    if not chromium_path():
        console.print("[yellow]no PNG figures: Chromium is not installed (apt-get install chromium)[/]")


MODEL_HELP = ("a built-in model (demo-cnn, resnet-small, tiny-transformer, mobilenetv2) or your own: "
              "path/to/file.py:function, a factory returning model, example_input, calib_batches and "
              "evaluate or val=(inputs, labels) (README, examples/my_model.py); or a torch.export program "
              "model.pt2 with --data")
DATA_HELP = "with --model model.pt2: torch.save'd dict of tensors calib, val_x, val_y (optional train)"


@app.command()
@_friendly
def search(model: str = typer.Option("demo-cnn", help=MODEL_HELP),
           data: Optional[str] = typer.Option(None, help=DATA_HELP),
           profile: Optional[str] = typer.Option(None, help="profile name or YAML path (default: x86-vnni on a VNNI host, else x86-avx2)"),
           space: str = typer.Option("default", help="search space name or YAML path"),
           trials: int = typer.Option(150, min=1, help="number of trials"),
           sampler: str = typer.Option("tpe", help="tpe | nsga2 | nsga3 | gp | random | qmc"),
           seed: int = typer.Option(0),
           budget: str = typer.Option("600", help="calibration time budget for kernels not yet measured: seconds, or e.g. 10m, 1h"),
           run_dir: Optional[Path] = typer.Option(None, help="run directory (default runs/<time>-<model>-<profile>); an existing run resumes"),
           proxy: str = typer.Option("eval", help="accuracy proxy: eval (BatchNorm recalibration + evaluate), "
                                     "finetune (a short distillation, then evaluate), sensitivity (per-layer deltas, additive)"),
           min_accuracy: Optional[float] = typer.Option(None, help="accuracy floor, a fraction (e.g. 0.97): points "
                                                        "below it are infeasible (overrides the space's min_accuracy)"),
           promote: Optional[str] = typer.Option(None, help="multi-fidelity: score again with this costlier proxy "
                                                 "(e.g. finetune) the trials whose --proxy score would join the front"),
           backend: str = typer.Option("local", help="where trials run: local (this process, or --jobs forked "
                                       "processes) | ray (actors on a Ray cluster, see --address)"),
           jobs: Optional[int] = typer.Option(None, help="trials at a time (default: 1 locally, one per CPU on Ray)"),
           address: Optional[str] = typer.Option(None, help="--backend ray: 'auto' (the cluster `ray start` made "
                                                 "here) or HOST:PORT of its head; default starts Ray on this machine")) -> None:
    """Search per-layer compression for a device profile; writes a run directory."""
    import automc.api as api
    from automc.accuracy import check_proxy_name
    from automc.model.source import parse_model_option
    from automc.search.backends import make_backend
    from automc.search.samplers import check_sampler_name
    from automc.search.space import check_min_accuracy

    # before the profile checks, the model and calibration take their time
    source = parse_model_option(model, data)
    check_sampler_name(sampler)
    check_proxy_name(proxy)
    if promote is not None:
        check_proxy_name(promote, "--promote")
    check_min_accuracy(min_accuracy, "--min-accuracy")
    budget_s = parse_duration(budget, "--budget")
    trials_on = make_backend(backend, jobs, address)
    trials_on.connect()  # an unreachable cluster answers in seconds, before the model is built
    try:
        _search(api, source, profile, space, trials, sampler, seed, budget_s, run_dir, proxy, min_accuracy, promote,
                trials_on)
    finally:
        trials_on.close()


def _search(api, source, profile, space, trials, sampler, seed, budget_s, run_dir, proxy, min_accuracy, promote,
            trials_on) -> None:
    """`automc search` once its options are checked and its backend connected."""
    from automc.devices import device_runner
    from automc.model.source import load_model
    from automc.profiles import load_profile

    profile = profile or api.default_profile_name()
    prof = load_profile(profile)
    if prof.name == "x86-avx2" and not device_runner(load_profile("x86-vnni")).measurable_here:
        console.print(f"[yellow]x86-vnni cannot be measured on this host "
                      f"({device_runner(load_profile('x86-vnni')).why_not_measurable()}); "
                      f"searching for the host profile '{prof.name}' instead[/]")
    runner = device_runner(prof)
    why_not = runner.why_not_measurable()  # probes the tracker of an rpc profile
    if why_not:
        console.print(f"[bold yellow]{runner.unmeasurable_note(why_not)}[/]")
    builtin = load_model(source, verbose=True)
    start = time.perf_counter()
    with _progress() as progress:
        result = api.search(builtin.model, builtin.example_input, builtin.evaluate, profile=profile, space=space,
                            n_trials=trials, calib_batches=builtin.calib_batches, run_dir=run_dir, sampler=sampler,
                            seed=seed, calibration_budget_s=budget_s, source=source, progress=True,
                            on_calibration=calibration_progress(progress, budget_s), proxy=proxy,
                            train_batches=builtin.train_batches, min_accuracy=min_accuracy, promote=promote,
                            backend=trials_on)
    _print_front(result)
    console.print(f"search took {time.perf_counter() - start:.0f} s; run directory: {result.run_dir}")
    _print_figures(result.run_dir)


@app.command()
@_friendly
def pareto(run: Path = typer.Argument(..., help="run directory")) -> None:
    """Print the Pareto front of a run and (re)write its figures (pareto, layers, hypervolume:
    .html, and .png where Chromium is installed) from the stored trials."""
    from automc.api import open_run

    result = open_run(run)
    _print_front(result)
    result.write_figures()
    _print_figures(result.run_dir)


@app.command()
@_friendly
def export(run: Path = typer.Argument(..., help="run directory"),
           trial: int = typer.Option(..., help="trial number (see `automc pareto`)"),
           out: Path = typer.Option(..., help="output directory"),
           finetune: bool = typer.Option(False, "--finetune", help="recover the compressed model first (distillation "
                                         "from the original on its training inputs); the export holds the recovered weights"),
           steps: Optional[int] = typer.Option(None, help="recovery steps (implies --finetune; without --steps or --budget, "
                                               "the default budget of automc.RecoveryBudget())"),
           budget: Optional[str] = typer.Option(None, help="recovery time budget, e.g. 90s or 5m (implies --finetune); "
                                                "with --steps, whichever ends first")) -> None:
    """Export a trial: config.json/.yaml, model.pt2, model.onnx (QDQ), TVM library; measured vs predicted here."""
    from automc.accuracy import RecoveryBudget
    from automc.api import open_run

    recovery = False
    if finetune or steps is not None or budget is not None:
        seconds = parse_duration(budget, "--budget") if budget is not None else None
        recovery = RecoveryBudget(steps=steps, seconds=seconds) if (steps, seconds) != (None, None) else RecoveryBudget()
    result = open_run(run)
    report = result.export(trial, out, finetune=recovery, progress=True)
    if report.recovery is not None:
        r = report.recovery
        console.print(f"recovery: accuracy {100 * r.accuracy_before:.2f}% → {100 * r.accuracy_after:.2f}% "
                      f"({r.steps} steps, {r.seconds:.0f} s)"
                      + ("; the recovered weights scored lower, the compressed ones are kept" if r.kept_before else ""))
    console.print(f"wrote {', '.join(report.files)} to {report.out_dir}")
    if report.measured_ms is not None:
        err = (report.predicted_ms - report.measured_ms) / report.measured_ms * 100 if report.predicted_ms else float("nan")
        console.print(f"outputs vs compressed PyTorch: max |diff| {report.max_abs_diff:.2e}")
        console.print(f"latency: measured {report.measured_ms:.3f} ms (fastest of {report.measured_passes} "
                      f"pass{'es' if report.measured_passes != 1 else ''}; median {report.measured_median_ms:.3f} ms, "
                      f"spread {100 * report.measured_spread:.0f}%), predicted {report.predicted_ms:.3f} ms "
                      f"({report.latency_source}), error {err:+.1f}%")
        if report.onnx_ms is not None:
            console.print(f"beside it, model.onnx in ONNX Runtime on the same threads: {report.onnx_ms:.3f} ms "
                          f"(outputs max |diff| {report.onnx_max_abs_diff:.2e})")
    else:
        console.print(f"predicted latency {report.predicted_ms} ms ({report.latency_source}); {report.note}")


@app.command()
@_friendly
def dashboard(run: Path = typer.Argument(..., help="run directory"),
              host: str = typer.Option("127.0.0.1", help="address to listen on (loopback: this machine only)"),
              port: int = typer.Option(8080, min=1, max=65535, help="port to listen on")) -> None:
    """Serve optuna-dashboard on a run's journal (trials, their per-layer configs and other
    user attributes, the front) until Ctrl-C; a search may still be writing to it."""
    import optuna_dashboard

    from automc.search.pareto import JOURNAL_FILE, journal_storage

    if not (Path(run) / JOURNAL_FILE).exists():
        raise UserInputError(f"RUN {run}: no {JOURNAL_FILE} there; give a directory made by `automc search`")
    console.print(f"optuna-dashboard for {run} at http://{host}:{port}/ (Ctrl-C stops it)")
    optuna_dashboard.run_server(journal_storage(Path(run)), host=host, port=port)


@app.command()
@_friendly
def profiles() -> None:
    """List the shipped profiles and whether each can be measured now (here or over RPC)."""
    from automc.latency.store import MeasurementStore
    from automc.devices import device_runner
    from automc.profiles import list_profiles

    table = Table(title="hardware profiles")
    for col in ("name", "target", "measured here", "kernels stored", "description"):
        table.add_column(col)
    for p in list_profiles():
        store = MeasurementStore(p)
        n = sum(1 for r in store.records() if r.spec)
        runner = device_runner(p)
        why_not = runner.why_not_measurable()  # rpc profiles: is the device behind the tracker reachable?
        here = f"yes{runner.via}" if not why_not else f"no: {why_not}"
        check = store.shipped_check
        shipped = ("" if not store.n_shipped and check is None else
                   f" ({store.n_shipped} records shipped, not yet checked here)" if check is None else
                   f" ({store.n_shipped} records shipped, ×{check.ratio:.2f} here)" if check.accepted else
                   " (shipped records IGNORED: " + (f"×{check.ratio:.2f} here)" if check.ratio else "unverifiable)"))
        state = f"{n}{shipped}" if n else f"0 (UNCALIBRATED: roofline){shipped}"
        table.add_row(p.name, str(p.target), here, state, p.description[:80])
    console.print(table)


@app.command()
@_friendly
def calibrate(profile: Optional[str] = typer.Option(None, help="profile name or YAML path"),
              model: str = typer.Option("demo-cnn", help="the model whose space to calibrate: " + MODEL_HELP),
              data: Optional[str] = typer.Option(None, help=DATA_HELP),
              space: str = typer.Option("default"),
              budget: str = typer.Option("30m", help="time budget: seconds, or e.g. 30m, 1h"),
              probes: int = typer.Option(16, min=0, help="random probe networks measured first (within a third "
                                         "of the budget), so kernels outside this model's space are predicted too"),
              random: int = typer.Option(64, min=0, help="random candidates of the space measured after its uniform "
                                         "baselines (seed 0: the same ones every time)"),
              retime: bool = typer.Option(False, "--retime", help="time the stored models and kernels again too, "
                                          "as one more pass (the fastest of the passes counts): run it minutes or "
                                          "hours after calibrating, as this host's speed comes in phases"),
              ship: bool = typer.Option(False, "--ship", help="then write the profile's whole store (this device's "
                                        "records) to hw_profiles/measurements/, to commit")) -> None:
    """Tune and measure the kernels a model's space can produce (resumes; never measures twice
    unless told to --retime).

    An rpc profile is tuned and measured on the device behind its TVM RPC tracker."""
    import automc.api as api
    from automc.latency.calibrate import calibrate_model, calibrate_probes
    from automc.latency.shipped import check_shipped, describe
    from automc.model.source import load_model, parse_model_option
    from automc.search.seeds import calibration_candidates

    budget_s = parse_duration(budget, "--budget")
    builtin = load_model(parse_model_option(model, data), verbose=True)
    ctx = api.prepare(builtin.model, builtin.example_input, builtin.evaluate, profile or api.default_profile_name(),
                      space, builtin.calib_batches)
    # before the store opens: shipped records this host does not run at their speed are left out
    console.print(f"{ctx.profile.name}: {describe(check_shipped(ctx.profile))}")
    start = time.perf_counter()
    with _progress() as progress:
        retimed: set[str] | None = set() if retime else None  # shared: one more pass a record, not one a part
        probed = calibrate_probes(ctx.profile, n=probes, budget_s=budget_s / 3, retimed=retimed,
                                  on_progress=calibration_progress(progress, budget_s / 3))
        left = max(0.0, budget_s - (time.perf_counter() - start))
        report = calibrate_model(ctx.model, builtin.example_input, *calibration_candidates(ctx.space, random),
                                 ctx.profile, budget_s=left, on_progress=calibration_progress(progress, left),
                                 retimed=retimed)
    console.print(f"{ctx.profile.name}: {probed.models_measured} of {probes} probe networks measured now "
                  f"({probed.kernels_measured} new kernels), {probed.models_reused} already stored")
    console.print(f"{ctx.profile.name}: {report.models_measured} of {report.models_wanted} candidate models measured "
                  f"now ({report.kernels_measured} new kernels), {report.models_reused} already stored, "
                  f"{report.seconds:.0f} s; per-model overhead {report.overhead_ms:.3f} ms")
    if ship:
        from automc.latency.store import MeasurementStore

        store = MeasurementStore(ctx.profile)
        out = store.write_shipped()
        console.print(f"wrote {len(store)} measurements of {store.device} to {out} "
                      f"({out.stat().st_size / 1e6:.2f} MB gzipped)")


@app.command()
@_friendly
def validate(run: Path = typer.Argument(..., help="run directory"),
             limit: int = typer.Option(8, help="validate at most this many front points, spread evenly by latency")) -> None:
    """Compile and measure the front end to end; print predicted vs measured latency."""
    from automc.api import open_run
    from automc.latency.validate import validate_candidates
    from automc.types import Candidate

    result = open_run(run)
    front = result.pareto  # sorted by latency: take points spread over it, not the fastest few
    if limit < len(front):
        front = front.iloc[sorted({round(i * (len(front) - 1) / max(limit - 1, 1)) for i in range(limit)})]
    cands = {int(r.trial): (Candidate.from_dict(r.candidate), float(r.latency_ms)) for r in front.itertuples()}
    summary = validate_candidates(result.context.model, result.context.example_input, result.context.calib_batches,
                                  cands, result.context.profile)
    table = Table(title=f"predicted vs measured ({result.context.profile.name})")
    for col in ("trial", "predicted ms", "measured ms", "error %", "spread %"):
        table.add_column(col, justify="right")
    for r in summary.rows:
        table.add_row(str(r.trial), f"{r.predicted_ms:.3f}", f"{r.measured_ms:.3f}", f"{r.error * 100:+.1f}", f"{r.spread * 100:.1f}")
    console.print(table)
    import pandas as pd

    out = Path(run) / "validation.csv"
    pd.DataFrame([{"trial": r.trial, "predicted_ms": r.predicted_ms, "measured_ms": r.measured_ms,
                   "error": r.error, "spread": r.spread} for r in summary.rows]).to_csv(out, index=False)
    console.print(f"wrote {out}")
    console.print(f"within ±10%: {summary.within_10:.0%}, within ±5%: {summary.within_5:.0%}, "
                  f"RMSPE {summary.rmspe:.1%}, Kendall τ {summary.kendall_tau:.2f}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
