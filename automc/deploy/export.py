"""Export a chosen candidate: config, the compressed model as a ``torch.export`` program and as
ONNX with QDQ (neither needs automc to run), the TVM library for the target, and — where the profile can be measured (this host, or its device through a TVM RPC
tracker) — a correctness check and a measured latency."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from automc.accuracy import RecoveryReport
from automc.deploy.compile import compile_candidate
from automc.deploy.portable import run_onnx, write_portable
from automc.devices import device_runner, export_library, tvm_target
from automc.devices.timing import Timing, median_timing
from automc.profiles import HardwareProfile
from automc.types import Candidate


def _modules(module):
    """A runtime module and everything it imports, depth first (the CUDA module sits under the host one)."""
    yield module
    for child in module.imports:
        yield from _modules(child)


@dataclass(frozen=True)
class ExportReport:
    """What was written and, on this host, how the library behaved (ms; max |Δ| of outputs
    against the exported torch model).
    ``measured_ms`` is the statistic the predictor predicts (``measure.Timing.latency_ms``)."""

    out_dir: str
    files: tuple[str, ...]
    predicted_ms: float | None
    latency_source: str
    measured_ms: float | None = None
    measured_passes: int | None = None  # timings of the library, CHECK_PAUSE_S apart (see CHECK_WINDOW_S)
    measured_median_ms: float | None = None  # the median pass's median: what a typical minute gives
    measured_spread: float | None = None  # (slowest − fastest) / median over every repeat of every pass
    max_abs_diff: float | None = None
    note: str = ""
    onnx_ms: float | None = None  # model.onnx in ONNX Runtime on this host, same threads and statistic
    onnx_max_abs_diff: float | None = None
    recovery: RecoveryReport | None = None  # when the exported weights were recovered first


# The export's measured figure is set against the prediction on hosts whose speed comes in
# phases of seconds to minutes, so one slow pass must not decide "predicted vs measured": a
# calibrated prediction is timed again, CHECK_PAUSE_S apart, until the fastest pass (the
# statistic the store keeps) is within CHECK_TOLERANCE of it or under it (more passes only
# lower it), for CHECK_WINDOW_S at most. An estimate is timed once: there is nothing to check.
CHECK_WINDOW_S = 30.0
CHECK_PAUSE_S = 3.0
CHECK_TOLERANCE = 0.10


def _timed_library(runner, library: Path, x: np.ndarray, predicted_ms: float | None,
                   calibrated: bool) -> tuple[list[np.ndarray], Timing, int]:
    """Run and time ``library`` (see CHECK_WINDOW_S); returns (outputs, the passes as one
    Timing, number of passes)."""
    outputs, timing = runner.run_library(library, [x])
    passes = [timing]
    end = time.monotonic() + CHECK_WINDOW_S
    while (calibrated and predicted_ms and time.monotonic() < end
           and median_timing(passes).latency_ms > predicted_ms * (1 + CHECK_TOLERANCE)):
        time.sleep(CHECK_PAUSE_S)
        passes.append(runner.run_library(library, [x])[1])
    return outputs, median_timing(passes), len(passes)


def export_model(compressed: nn.Module, example_input: torch.Tensor, candidate: Candidate,
                 profile: HardwareProfile, out_dir: Path, predicted_ms: float | None = None,
                 latency_source: str = "calibrated", extra_config: dict | None = None) -> ExportReport:
    """Write ``config.json``/``config.yaml``, ``model.pt2``, ``model.onnx`` (see
    ``deploy.portable``), a README saying how to run them, and the TVM library into ``out_dir``,
    for ``compressed``: the model with ``candidate`` applied, activation ranges calibrated and
    BatchNorm recalibrated (and perhaps recovered after), exported as it is.

    For a profile that can be measured now (this host runs it, or its RPC device is reachable),
    the library is tuned (reusing the profile's database), loaded back where it runs, checked
    against the compressed PyTorch model and timed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    compressed.eval()
    config = {"profile": profile.name, "target": dict(profile.target), "candidate": candidate.to_dict(),
              "predicted_latency_ms": predicted_ms, "latency_source": latency_source,
              "input_shape": list(example_input.shape),
              # the predicted and checked latency is for this many TVM CPU threads: run the
              # library with TVM_NUM_THREADS set to it (TVM's default on a small VM is slower)
              "tvm_num_threads": profile.threads, **(extra_config or {})}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    files = ["config.json", "config.yaml", *write_portable(compressed, example_input, out_dir, profile.threads)]

    if profile.target_kind == "cuda":
        executable = compile_candidate(compressed, None, example_input, profile, tuned=False).executable
        source = "\n".join(m.inspect_source() for m in _modules(executable.mod) if m.kind == "cuda")
        (out_dir / "model.cu").write_text(source)
        executable.export_library(str(out_dir / "model.so"))
        files += ["model.cu", "model.so"]
        ptx_note = _write_ptx(source, profile, out_dir / "model.ptx")
        if not ptx_note:
            files.append("model.ptx")
        return ExportReport(str(out_dir), tuple(files), predicted_ms, latency_source,
                            note="CUDA library built here; measure it on the GPU (uncalibrated here)" + ptx_note)
    # probes the tracker for an rpc profile: measured on its device when that is reachable
    runner = device_runner(profile)
    why_not = runner.why_not_measurable()
    if why_not:
        executable = compile_candidate(compressed, None, example_input, profile, tuned=False).executable
        export_library(executable, out_dir / "model.so", profile)
        return ExportReport(str(out_dir), tuple(files + ["model.so"]), predicted_ms, latency_source,
                            note=f"not measured: {why_not}")

    executable = compile_candidate(compressed, None, example_input, profile).executable
    export_library(executable, out_dir / "model.so", profile)
    files.append("model.so")
    # the written library itself is checked and timed, here or on the profile's RPC device
    outputs, timing, passes = _timed_library(runner, out_dir / "model.so", example_input.numpy(), predicted_ms,
                                             latency_source == "calibrated")
    with torch.no_grad():
        want = compressed(example_input).numpy()
    # ONNX Runtime runs on this host: compared only where the library runs here too
    onnx_out, onnx_timing = run_onnx(out_dir / "model.onnx", example_input.numpy(), profile) \
        if runner.on_this_host else (None, None)
    report = ExportReport(str(out_dir), tuple(files), predicted_ms, latency_source, timing.latency_ms,
                          passes, timing.median_ms, timing.spread, float(np.abs(outputs[0] - want).max()),
                          onnx_ms=onnx_timing.latency_ms if onnx_timing else None,
                          onnx_max_abs_diff=float(np.abs(onnx_out - want).max()) if onnx_timing else None)
    (out_dir / "export_report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _write_ptx(cuda_source: str, profile: HardwareProfile, path: Path) -> str:
    """Compile the CUDA kernels to PTX for the profile's ``arch`` with nvcc, when this host has
    it; returns "" on success, else a note for the report saying why there is no PTX."""
    import shutil

    from tvm.support import nvcc

    if shutil.which("nvcc") is None:
        return "; no model.ptx: nvcc is not on PATH (install the CUDA toolkit)"
    arch = str(profile.target.get("arch", "sm_80"))
    # nvcc reads the compute version from the current target when no GPU is present
    with tvm_target(profile):
        ptx = nvcc.compile_cuda(cuda_source, target_format="ptx", arch=[f"-arch={arch}"], compiler="nvcc")
    path.write_bytes(ptx if isinstance(ptx, (bytes, bytearray)) else str(ptx).encode())
    return ""
