"""Export for every shipped target: measured here for x86, cross-compiled for ARM, CUDA codegen."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy.export import ExportReport, export_model
from automc.profiles import HardwareProfile, load_profile
from automc.types import Candidate, LayerChoice

CAND = Candidate(layers={"blocks.1.expand.0": LayerChoice(8, 8, prune=0.25), "head_conv.0": LayerChoice(8, 8)})


def export_candidate(model, example_input, calib_batches, candidate: Candidate, profile: HardwareProfile, out_dir,
                     predicted_ms: float | None = None, latency_source: str = "calibrated") -> ExportReport:
    """Compress ``model`` by ``candidate`` and export it, as ``SearchResult.export`` does without recovery."""
    compressed = apply_candidate(model, candidate, example_input, calib_batches)
    recalibrate_bn(compressed, calib_batches)
    return export_model(compressed.eval(), example_input, candidate, profile, out_dir, predicted_ms, latency_source)


def test_export_host_profile_loads_matches_and_measures(tmp_path, demo, quick_profile):
    report = export_candidate(demo.model, demo.example_input, demo.calib_batches[:2], CAND, quick_profile,
                              tmp_path, predicted_ms=1.0)
    for name in ("config.json", "config.yaml", "model.pt2", "model.onnx", "model.so", "README.md",
                 "export_report.json"):
        assert (tmp_path / name).exists(), name
    assert set(report.files) >= {"model.pt2", "model.onnx", "model.so", "README.md"}
    assert report.measured_ms and report.measured_ms > 0
    assert report.max_abs_diff is not None and report.max_abs_diff < 0.1
    assert report.onnx_ms and report.onnx_ms > 0 and report.onnx_max_abs_diff < 0.1  # ONNX Runtime beside it
    # the measured (and predicted) latency is for the profile's thread count: the config says so
    assert json.loads((tmp_path / "config.json").read_text())["tvm_num_threads"] == quick_profile.threads == 2
    assert "TVM_NUM_THREADS=2" in (tmp_path / "README.md").read_text()
    _runs_without_automc(tmp_path)


def test_a_measurement_over_its_calibrated_prediction_is_timed_again_within_the_window(tmp_path, demo, quick_profile,
                                                                                        monkeypatch):
    """A library measured slower than its calibrated prediction is timed again, pass after pass,
    until the window closes (a prediction no host meets: every pass is taken); the report keeps
    the fastest pass, the median and the spread. An estimate is timed once."""
    import automc.deploy.export as export_mod
    from automc.devices import device_runner

    monkeypatch.setattr(export_mod, "CHECK_WINDOW_S", 4.0)
    monkeypatch.setattr(export_mod, "CHECK_PAUSE_S", 1.0)
    start = time.monotonic()
    report = export_candidate(demo.model, demo.example_input, demo.calib_batches[:2], CAND, quick_profile,
                              tmp_path, predicted_ms=1e-4)
    assert report.measured_passes >= 3 and time.monotonic() - start < 600
    assert 0 < report.measured_ms <= report.measured_median_ms and report.measured_spread >= 0
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert (saved["measured_passes"], saved["measured_ms"]) == (report.measured_passes, report.measured_ms)
    x = demo.example_input.numpy()
    _, once, passes = export_mod._timed_library(device_runner(quick_profile), tmp_path / "model.so", x, 1e-4,
                                                calibrated=False)
    assert passes == 1 and once.latency_ms > 0


# What a user who never installed automc runs: each exported file in its own runtime, against the
# compressed model's own output; the ONNX graph really carries QDQ pairs (ONNX Runtime runs
# them as integer kernels, hence the looser bound there).
_USER_SCRIPT = """
import sys
sys.modules["automc"] = None  # any import of automc, by unpickling or otherwise, now fails
import numpy as np, onnx, onnxruntime as ort, torch, tvm
from tvm import relax
x, want = np.load("sample_input.npy"), np.load("sample_output.npy")
scale = float(np.abs(want).max())
ops = [n.op_type for n in onnx.load("model.onnx").graph.node]
assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 4, ops
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
got = session.run(None, {"input": x})[0]
assert np.abs(got - want).max() < 0.02 * scale and got.argmax() == want.argmax(), (got, want)
got = torch.export.load("model.pt2").module()(torch.from_numpy(x)).detach().numpy()
assert np.abs(got - want).max() < 1e-4 * scale, (got, want)
vm = relax.VirtualMachine(tvm.runtime.load_module("model.so"), tvm.cpu())
got = vm["main"](tvm.runtime.tensor(x))[0].numpy()
assert np.abs(got - want).max() < 0.1 * scale and got.argmax() == want.argmax(), (got, want)
print("ok")
"""


def _runs_without_automc(export_dir):
    res = subprocess.run([sys.executable, "-c", _USER_SCRIPT], cwd=export_dir, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_export_arm_cross_compiles_aarch64(tmp_path, demo, require_in_ci):
    require_in_ci(shutil.which("aarch64-linux-gnu-gcc") is not None,
                  "aarch64-linux-gnu-gcc not installed (`make sysdeps` installs it)")
    report = export_candidate(demo.model, demo.example_input, demo.calib_batches[:1], CAND, load_profile("arm-cpu"),
                              tmp_path, latency_source="uncalibrated")
    assert (tmp_path / "model.so").read_bytes()[:4] == b"\x7fELF"
    assert (tmp_path / "model.so").read_bytes()[18] == 0xB7  # ELF e_machine = EM_AARCH64
    assert "not measured" in report.note


def test_export_cuda_generates_kernels_and_ptx(tmp_path, demo, require_in_ci):
    require_in_ci(shutil.which("nvcc") is not None, "nvcc not on PATH (the CUDA toolkit compiles the PTX)")
    report = export_candidate(demo.model, demo.example_input, demo.calib_batches[:1], CAND, load_profile("cuda-gpu"),
                              tmp_path, latency_source="uncalibrated")
    source = (tmp_path / "model.cu").read_text()
    assert "__global__" in source
    assert "uncalibrated" in report.note
    ptx = (tmp_path / "model.ptx").read_text()
    # one PTX entry per CUDA kernel (each is declared, then defined, in the source), for the profile's arch
    kernels = set(re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", source))
    assert ".target sm_80" in ptx.splitlines() and ptx.count(".entry") == len(kernels) > 5
    assert "model.ptx" in report.files
