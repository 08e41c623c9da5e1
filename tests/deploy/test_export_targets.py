"""Export for every shipped target: measured here for x86, cross-compiled for ARM, CUDA codegen."""

from __future__ import annotations

import json
import re
import shutil

from automc.deploy.export import export_candidate
from automc.profiles import load_profile
from automc.types import Candidate, LayerChoice

CAND = Candidate(layers={"blocks.1.expand.0": LayerChoice(8, 8, prune=0.25), "head_conv.0": LayerChoice(8, 8)})


def test_export_host_profile_loads_matches_and_measures(tmp_path, demo, quick_profile):
    report = export_candidate(demo.model, demo.example_input, demo.calib_batches[:2], CAND, quick_profile,
                              tmp_path, predicted_ms=1.0)
    for name in ("config.json", "config.yaml", "model.pt", "model.so", "export_report.json"):
        assert (tmp_path / name).exists(), name
    assert report.measured_ms and report.measured_ms > 0
    assert report.max_abs_diff is not None and report.max_abs_diff < 0.1
    # the measured (and predicted) latency is for the profile's thread count: the config says so
    assert json.loads((tmp_path / "config.json").read_text())["tvm_num_threads"] == quick_profile.threads == 2


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
