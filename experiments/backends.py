"""What a user would pick instead of automc, measured in one run on this host (DESIGN §7: "What
users pick instead").

For each model (default: demo-cnn and mobilenetv2), batch 1, 2 threads, the median latency of:
torch eager fp32; torch.compile fp32 (inductor, default settings); torch int8 through PT2E
(torchao's X86InductorQuantizer, calibrated on the model's calibration batches, then
torch.compile with inductor freezing); ONNX Runtime fp32 and int8 (static QDQ quantization:
QUInt8 activations, per-channel QInt8 weights, MinMax calibration on the same images); TVM
fp32 untuned (an empty database: default schedules); automc's uniform-int8 baseline (the
``int8`` candidate of the search's baselines) lowered, tuned into the profile's database at
``--trials`` per task and compiled; optionally TVM fp32 tuned the same way (``--fp32-tuned``)
and a candidate exported by ``automc export`` (``--candidate DIR/config.json``).

Latency: every backend is built first, then timed in ``--rounds`` rounds, each backend once a
round in turn, each time the median of ``repeat`` runs of at least ``min_repeat_ms`` ms (TVM
through ``automc.latency.measure.time_executable``); a figure is its median round. This host's
slow phases last minutes: timed one after another, each backend met a phase of its own (Zen 4,
MobileNetV2 uniform int8 in TVM 2.0 ms alone, 3.4-3.5 ms in two such runs, while ORT int8 gave
1.9 and 3.3 ms in them), so a ratio of two figures measured minutes apart was the phases'.
Accuracy (fraction) of the int8 variants where the model is trained: every variant is run
exactly as timed (batch-1 artifacts, one validation image at a time).

Needs the bench extras: ``make bench-deps`` (onnx, onnxruntime, onnxscript, torchao).

    AUTOMC_CACHE=… .venv/bin/python experiments/backends.py [--models demo-cnn mobilenetv2]
        [--trials 4] [--profile x86-vnni] [--candidate runs/…/export/config.json --candidate-model demo-cnn]

Prints a table per model; writes experiments/backends.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from _timing import median_ms
from torch import nn

THREADS = 2
Runner = Callable[[torch.Tensor], torch.Tensor]


class PerSample(nn.Module):
    """A batch-1 artifact (compiled torch, ORT session, TVM VM) as a module the model's
    ``evaluate`` can call on batches: one image at a time, outputs concatenated."""

    def __init__(self, run: Runner):
        super().__init__()
        self._run = (run,)  # in a tuple: not a submodule, so evaluate's .eval() leaves it alone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._run[0](x[i:i + 1].contiguous()) for i in range(x.shape[0])])


# --- torch -------------------------------------------------------------------------------------

def torch_compiled(model: nn.Module, x: torch.Tensor) -> Runner:
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(x)
    return compiled


def torch_pt2e_int8(model: nn.Module, x: torch.Tensor, calib: tuple[torch.Tensor, ...]) -> Runner:
    """PT2E static int8 for x86 inductor: export → prepare → calibrate → convert → compile (freezing)."""
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    exported = torch.export.export(model, (x,)).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for batch in calib:  # the artifact is batch 1 (static shapes): calibrate image by image
            for i in range(batch.shape[0]):
                prepared(batch[i:i + 1].contiguous())
    converted = convert_pt2e(prepared)
    # Left on for the rest of the process (torch.compile fp32 is built and timed before): a
    # call in another grad mode recompiles, and without freezing the int8 graph runs its weight
    # quantization at every call (measured: 913 ms for MobileNetV2). Compiled in inference
    # mode, as it is timed and evaluated.
    inductor_config.freezing = True
    compiled = torch.compile(converted)
    with torch.inference_mode():
        compiled(x)
    return compiled


# --- ONNX Runtime ------------------------------------------------------------------------------

def onnx_export(model: nn.Module, x: torch.Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=True,
                          verbose=False)
    return path


def ort_quantize(fp32_path: Path, out_path: Path, calib: tuple[torch.Tensor, ...]) -> Path:
    """Static QDQ int8: QUInt8 activations, per-channel QInt8 weights, MinMax calibration."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": b[i:i + 1].contiguous().numpy()} for b in calib for i in range(b.shape[0])])

        def get_next(self):
            return next(self.items, None)

    pre = out_path.with_name(out_path.stem + "_pre.onnx")
    quant_pre_process(str(fp32_path), str(pre))
    quantize_static(str(pre), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return out_path


def ort_runner(path: Path) -> Runner:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

    return run


# --- TVM / automc ------------------------------------------------------------------------------

def tvm_runner(executable) -> Runner:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())

    def run(x: torch.Tensor) -> torch.Tensor:
        out = vm["main"](tvm.runtime.tensor(x.numpy()))
        return torch.from_numpy((out if hasattr(out, "numpy") else out[0]).numpy())

    return run


def automc_candidate(builtin, candidate) -> nn.Module:
    """The compressed model as ``automc export`` builds it: applied, BatchNorm recalibrated."""
    from automc.accuracy import recalibrate_bn
    from automc.compress import apply_candidate

    compressed = apply_candidate(builtin.model, candidate, builtin.example_input, builtin.calib_batches)
    recalibrate_bn(compressed, builtin.calib_batches)
    return compressed.eval()


def tvm_compiled(model: nn.Module, x: torch.Tensor, profile, trials: int | None, database=None):
    """Lower with automc, tune missing tasks at ``trials`` per task (None: untuned, with the
    given database), compile. Returns (executable, seconds spent tuning and compiling)."""
    from automc.deploy.compile import compile_candidate

    start = time.perf_counter()
    compiled = compile_candidate(model, None, x, profile, database=database, trials_per_task=trials or 0)
    return compiled.executable, time.perf_counter() - start


def empty_database(tmp: Path):
    from automc.deploy.build import import_meta_schedule

    ms = import_meta_schedule()
    return ms.database.JSONDatabase(str(tmp / "w.json"), str(tmp / "r.json"), allow_missing=True)


# --- the run -----------------------------------------------------------------------------------

def bench_model(name: str, args, profile, candidate=None) -> dict:
    from automc.api import prepare
    from automc.latency.measure import time_executable
    from automc.model.zoo import load_builtin
    from automc.search.seeds import baseline_params
    from automc.search.space import candidate_from_params

    builtin = load_builtin(name, verbose=True)
    model, x = builtin.model.eval(), builtin.example_input.contiguous()
    trained = name != "mobilenetv2"  # the benchmark MobileNetV2 is untrained (see automc.model.zoo)
    rows: dict[str, dict] = {}
    timers: dict[str, Callable[[], float]] = {}  # label → one timing (ms: the median of `repeat` runs)
    tvm_profile = profile.model_copy(update={"tuning": profile.tuning.model_copy(
        update={"repeat": args.repeat, "min_repeat_ms": args.min_repeat_ms})})

    def torch_timer(run: Runner) -> Callable[[], float]:
        return lambda: median_ms(lambda: run(x), args.repeat, args.min_repeat_ms)

    def tvm_timer(ex) -> Callable[[], float]:
        return lambda: time_executable(ex, [x.numpy()], tvm_profile).median_ms

    def add(label: str, timer: Callable[[], float], acc_of: nn.Module | None = None,
            build_s: float | None = None) -> None:
        acc = None
        if trained and acc_of is not None:
            with torch.inference_mode():
                acc = builtin.evaluate(acc_of)
        rows[label] = {"accuracy": acc, "build_s": build_s}
        timers[label] = timer
        print(f"  built {label}" + (f", accuracy {acc:.4f}" if acc is not None else ""), flush=True)

    print(f"{name} {tuple(x.shape)}", flush=True)
    add("torch eager fp32", torch_timer(model), acc_of=model)
    t = time.perf_counter()
    compiled = torch_compiled(model, x)
    add("torch.compile fp32", torch_timer(compiled), build_s=time.perf_counter() - t)
    t = time.perf_counter()
    pt2e = torch_pt2e_int8(model, x, builtin.calib_batches)
    add("torch PT2E int8 (x86 inductor, freezing)", torch_timer(pt2e), acc_of=PerSample(pt2e), build_s=time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = onnx_export(model, x, Path(tmp) / "model.onnx")
        add("ONNX Runtime fp32", torch_timer(ort_runner(fp32_path)))
        t = time.perf_counter()
        ort_int8 = ort_runner(ort_quantize(fp32_path, Path(tmp) / "model_int8.onnx", builtin.calib_batches))
        add("ONNX Runtime int8 (QDQ, per-channel)", torch_timer(ort_int8), acc_of=PerSample(ort_int8),
            build_s=time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        ex, build_s = tvm_compiled(model, x, profile, None, empty_database(Path(tmp)))
    add("TVM fp32, empty database (packed kernels, other tasks default schedules)", tvm_timer(ex), build_s=build_s)
    if args.fp32_tuned:
        ex, build_s = tvm_compiled(model, x, profile, args.trials)
        add(f"TVM fp32 tuned ({args.trials} trials/task)", tvm_timer(ex), build_s=build_s)

    ctx = prepare(model, x, builtin.evaluate, profile, "default", builtin.calib_batches)
    int8 = automc_candidate(builtin, candidate_from_params(ctx.space, baseline_params(ctx.space)["int8"]))
    ex, build_s = tvm_compiled(int8, x, profile, args.trials)
    label = f"automc uniform int8, TVM ({args.trials} trials/task)"
    add(label, tvm_timer(ex), acc_of=PerSample(tvm_runner(ex)), build_s=build_s)
    if trained:
        rows[label]["accuracy_torch_simulated"] = builtin.evaluate(int8)
    if candidate is not None:
        chosen = automc_candidate(builtin, candidate)
        ex, build_s = tvm_compiled(chosen, x, profile, args.trials)
        add(f"automc candidate {args.candidate}", tvm_timer(ex), acc_of=PerSample(tvm_runner(ex)), build_s=build_s)

    # every backend once a round, in turn: this host's slow phases last minutes, and timed one
    # after another each backend met a phase of its own (see the module docstring)
    rounds: dict[str, list[float]] = {label: [] for label in timers}
    for r in range(args.rounds):
        for label, timer in timers.items():
            rounds[label].append(timer())
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{v[-1]:.3f}" for v in rounds.values()), flush=True)
    for label, ms in rounds.items():
        rows[label].update(ms=float(np.median(ms)), rounds_ms=ms)
    return {"input_shape": list(x.shape), "trained": trained, "rows": rows}


def int8_to_ort_int8(rows: dict[str, dict], trials: int) -> dict | None:
    """automc's uniform int8 over ORT int8, round by round (the two timed a few seconds apart,
    so in one phase of the host) and their median."""
    ours, ort = rows.get(f"automc uniform int8, TVM ({trials} trials/task)"), rows.get("ONNX Runtime int8 (QDQ, per-channel)")
    if ours is None or ort is None:
        return None
    per_round = [a / b for a, b in zip(ours["rounds_ms"], ort["rounds_ms"])]
    return {"median": float(np.median(per_round)), "rounds": per_round}


def main() -> None:
    from automc.api import default_profile_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo-cnn", "mobilenetv2"])
    parser.add_argument("--profile", default=None, help="default: x86-vnni where measurable here, else x86-avx2")
    parser.add_argument("--trials", type=int, default=4, help="MetaSchedule trials per tuned task (default 4)")
    parser.add_argument("--fp32-tuned", action="store_true", help="also tune and time TVM fp32")
    parser.add_argument("--candidate", default=None, help="config.json written by `automc export`")
    parser.add_argument("--candidate-model", default="demo-cnn")
    parser.add_argument("--rounds", type=int, default=5, help="times every backend is timed, in turn")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--min-repeat-ms", type=float, default=200.0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("backends.json")))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)

    import onnxruntime
    import torchao
    import tvm

    from automc.profiles import load_profile
    from automc.types import Candidate

    profile_name = args.profile or default_profile_name()
    profile = load_profile(profile_name)
    candidate = Candidate.from_dict(json.loads(Path(args.candidate).read_text())["candidate"]) if args.candidate else None
    result = {"profile": profile_name, "threads": THREADS, "batch": 1, "rounds": args.rounds, "repeat": args.repeat,
              "min_repeat_ms": args.min_repeat_ms, "trials_per_task": args.trials, "host": platform.processor() or platform.machine(),
              "versions": {"torch": torch.__version__, "torchao": torchao.__version__, "onnxruntime": onnxruntime.__version__,
                           "tvm": tvm.__version__}, "models": {}}
    started = time.perf_counter()
    for name in args.models:
        result["models"][name] = bench_model(name, args, profile, candidate if name == args.candidate_model else None)
    result["wall_s"] = time.perf_counter() - started

    print(f"\nprofile {profile_name}, batch 1, {THREADS} threads; each backend timed in {args.rounds} rounds, in "
          f"turn, each round the median of {args.repeat} runs ≥ {args.min_repeat_ms:g} ms; the median round")
    for name, res in result["models"].items():
        base = res["rows"]["torch eager fp32"]["ms"]
        print(f"\n{name} {tuple(res['input_shape'])}\n| backend | median ms | rounds min–max | ÷ torch eager | accuracy |"
              "\n|---|---|---|---|---|")
        for label, row in res["rows"].items():
            acc = f"{row['accuracy']:.2%}" if row["accuracy"] is not None else "–"
            print(f"| {label} | {row['ms']:.3f} | {min(row['rounds_ms']):.3f}–{max(row['rounds_ms']):.3f} | "
                  f"{row['ms'] / base:.2f} | {acc} |")
        ratio = int8_to_ort_int8(res["rows"], args.trials)
        if ratio is not None:
            res["automc_uniform_int8_over_ort_int8"] = ratio
            print(f"automc uniform int8 ÷ ORT int8 (bar ≤ 1.5): {ratio['median']:.2f}, median of the rounds' ratios "
                  f"({min(ratio['rounds']):.2f}–{max(ratio['rounds']):.2f})")
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
