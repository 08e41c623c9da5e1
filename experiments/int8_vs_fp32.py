"""int8 VNNI kernels against TVM fp32 as deployed, torch fp32 and torch's quantized engines, per layer.

For each layer: the automc int8 layer as it deploys on x86-vnni (packed VNNI kernel fused with
its dequantize epilogue, fp32 out, see automc/deploy/x86.py) and the bare VNNI kernel (int32
out); the fp32 twin lowered the same way (the packed, hand-scheduled fp32 kernel, which beat
MetaSchedule-tuned code: 1.46 ms vs 2.31 ms on the 3×3 conv); torch fp32 eager; torch quantized
(``torch.ao.nn.quantized``, quint8 in and out) with the fbgemm engine and, if it runs, onednn.
2 threads everywhere (TVM num-cores 2), medians of ``--repeat`` runs of at least 200 ms each,
one process. Prints a table and writes experiments/int8_vs_fp32.json.

    .venv/bin/python experiments/int8_vs_fp32.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import median_ms
from torch import nn


def _profile_target() -> dict:
    """The x86-vnni profile's target: the code measured is the code that deploys."""
    from automc.profiles import load_profile

    return dict(load_profile("x86-vnni").target)


TARGET = _profile_target()
FP32 = "TVM fp32 packed (as deployed) us"
# (name, torch layer, input shape)
LAYERS = [
    ("conv 1x64x56x56->64 3x3 p1", lambda: nn.Conv2d(64, 64, 3, 1, 1), (1, 64, 56, 56)),
    ("dense M=64 K=N=1024", lambda: nn.Linear(1024, 1024), (64, 1024)),
    ("conv 1x16x32x32->64 1x1 (demo)", lambda: nn.Conv2d(16, 64, 1), (1, 16, 32, 32)),
    ("conv 1x64x16x16->24 1x1 (demo)", lambda: nn.Conv2d(64, 24, 1), (1, 64, 16, 16)),
]


def tvm_task_us(executable, call, repeat: int) -> float:
    """Median µs of one fused task of a compiled model, on random arguments of its shapes."""
    import tvm

    lib = executable.mod.imports[0]
    rng = np.random.default_rng(0)
    args = []
    for shape, dtype in call.args:
        data = rng.integers(0, 100, shape) if dtype.startswith(("int", "uint")) else rng.uniform(-1, 1, shape)
        args.append(tvm.runtime.tensor(data.astype(dtype)))
    evaluator = lib.time_evaluator(call.name, tvm.cpu(), number=1, repeat=repeat, min_repeat_ms=200)
    return float(np.median(evaluator(*args).results) * 1e6)


def main_task(mod, kind: str):
    """The fused conv2d / matmul task of a one-layer module."""
    from automc.deploy.build import task_calls

    calls = [c for c in task_calls(mod) if kind in c.name]
    assert len(calls) == 1, [c.name for c in task_calls(mod)]
    return calls[0]


def vnni_kernel_us(layer: nn.Module, shape: tuple[int, ...], repeat: int) -> float:
    """The bare VNNI kernel (pack + u8·s8 reduction + unpack to int32), scheduled as deployed."""
    import tvm

    from automc.deploy import x86

    if isinstance(layer, nn.Linear):
        func = x86.dense_func(shape[0], layer.in_features, layer.out_features, "uint8", "k")
        args = [(shape, "uint8"), (x86.pack_dense_weight(np.zeros((layer.out_features, layer.in_features), np.int8)).shape, "int8"),
                ((shape[0], layer.out_features), "int32")]
    else:
        k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
        func = x86.conv2d_func(shape, layer.out_channels, (k, k), (s, s), (p,) * 4, "uint8", "k")
        oh, ow = (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1
        w = np.zeros((layer.out_channels, shape[1], k, k), np.int8)
        args = [(shape, "uint8"), (x86.pack_conv_weight(w).shape, "int8"), ((shape[0], layer.out_channels, oh, ow), "int32")]
    lib = tvm.compile(tvm.IRModule({"k": x86.schedule_fused(func)}), tvm.target.Target(TARGET))
    rng = np.random.default_rng(0)
    tensors = [tvm.runtime.tensor(rng.integers(0, 100, s).astype(d)) for s, d in args]
    evaluator = lib.mod.time_evaluator("k", tvm.cpu(), number=1, repeat=repeat, min_repeat_ms=200)
    return float(np.median(evaluator(*tensors).results) * 1e6)


def torch_quantized_us(layer: nn.Module, shape: tuple[int, ...], engine: str, repeat: int) -> float:
    """``torch.ao.nn.quantized`` twin (per-channel s8 weights, quint8 activations) on ``engine``."""
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = engine
    w = layer.weight.detach()
    qw = torch.quantize_per_channel(w, w.abs().amax(dim=tuple(range(1, w.dim()))) / 127 + 1e-8,
                                    torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)
    if isinstance(layer, nn.Linear):
        q = nnq.Linear(layer.in_features, layer.out_features)
    else:
        q = nnq.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    q.set_weight_bias(qw, layer.bias.detach())
    q.scale, q.zero_point = 0.05, 0
    x = torch.quantize_per_tensor(torch.rand(shape), 1 / 255, 0, torch.quint8)
    return median_ms(lambda: q(x), repeat, 200.0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(2)

    from automc.deploy.build import import_meta_schedule
    from automc.deploy.build import compile_module
    from automc.deploy.lower import IntegerLayer
    from automc.deploy.relax_lowering import relax_from_deploy
    from automc.devices import use_profile_threads
    from automc.profiles import load_profile

    ms = import_meta_schedule()
    profile = load_profile("x86-vnni")
    use_profile_threads(profile)  # TVM on the profile's cores, as torch has 2 threads
    rows = []
    for name, make, shape in LAYERS:
        torch.manual_seed(0)
        layer = make().eval()
        kind = "matmul" if isinstance(layer, nn.Linear) else "conv2d"
        x = torch.rand(shape)
        row = {"layer": name}
        int8 = relax_from_deploy(nn.Sequential(layer), {"0": IntegerLayer(8, 8, 1 / 255, False)}, x, profile=profile)
        with tempfile.TemporaryDirectory() as tmp:
            db = ms.database.JSONDatabase(str(Path(tmp) / "w.json"), str(Path(tmp) / "r.json"), allow_missing=True)
            row["int8 VNNI layer (fused, fp32 out) us"] = tvm_task_us(compile_module(int8, profile, db), main_task(int8, kind), args.repeat)
            row["int8 VNNI kernel (int32 out) us"] = vnni_kernel_us(layer, shape, args.repeat)
            fp32 = relax_from_deploy(nn.Sequential(layer), {}, x, profile=profile)
            row[FP32] = tvm_task_us(compile_module(fp32, profile, db), main_task(fp32, kind), args.repeat)
        row["torch fp32 eager us"] = median_ms(lambda: layer(x), args.repeat, 200.0) * 1e3
        row["torch fbgemm int8 us"] = torch_quantized_us(layer, shape, "fbgemm", args.repeat)
        try:
            row["torch onednn int8 us"] = torch_quantized_us(layer, shape, "onednn", args.repeat)
        except Exception as exc:  # onednn is optional in torch builds
            row["torch onednn int8 us"] = None
            print(f"onednn failed on {name}: {type(exc).__name__}: {exc}")
        rows.append(row)
        print(row, flush=True)

    fp32_key = FP32
    print(f"\n2 threads, target {TARGET}, median of {args.repeat} runs of >= 200 ms each")
    print("| layer | int8 VNNI layer µs | VNNI kernel µs | TVM fp32 packed µs | torch fp32 µs | fbgemm µs | onednn µs "
          "| fp32 ÷ int8 | fbgemm ÷ int8 |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours = r["int8 VNNI layer (fused, fp32 out) us"]
        onednn = r["torch onednn int8 us"]
        print(f"| {r['layer']} | {ours:.0f} | {r['int8 VNNI kernel (int32 out) us']:.0f} | {r[fp32_key]:.0f} "
              f"| {r['torch fp32 eager us']:.0f} | {r['torch fbgemm int8 us']:.0f} | "
              f"{'n/a' if onednn is None else f'{onednn:.0f}'} | {r[fp32_key] / ours:.2f} | {r['torch fbgemm int8 us'] / ours:.2f} |")
    Path(__file__).with_name("int8_vs_fp32.json").write_text(json.dumps(
        {"target": TARGET, "threads": 2, "repeat": args.repeat, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
