"""Exports a user deploys without automc: a ``torch.export`` program and an ONNX model with QDQ.

A compressed model holds automc's ``QuantizedLayer`` wrappers, which only automc can unpickle.
Here each one becomes standard operators: the activation fake-quantized with
``fake_quantize_per_tensor_affine`` and the weight with ``fake_quantize_per_channel_affine``,
which the ONNX exporter turns into QuantizeLinear/DequantizeLinear pairs (int8 weights per
output channel, u8 or s8 activations, zero point 0), the form ONNX Runtime runs as integer
kernels. ONNX allows only the 8-bit ranges there, so narrower grids are expressed exactly: a
weight below 8 bits already lies on its grid (its integers fit int8), and an activation below 8
bits is clipped to its own range before the 8-bit quantizer, which then rounds as its grid
does. Grids wider than 8 bits stay as the same float arithmetic the torch model runs.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automc.compress import QuantizedLayer
from automc.compress.quantize import act_levels, fake_quant_act
from automc.devices import Timing
from automc.profiles import HardwareProfile
from automc.types import FP32_BITS

ONNX_OPSET = 18
_INT8_BITS = 8


class _StandardQuantizedLayer(nn.Module):
    """One ``QuantizedLayer`` in standard operators only (what torch.export and ONNX keep)."""

    def __init__(self, layer: QuantizedLayer):
        super().__init__()
        self.inner = copy.deepcopy(layer.inner)
        self.a_bits, self.a_signed, self.a_scale = layer.a_bits, layer.a_signed, float(layer.a_scale)
        self.qdq_weight = layer.w_bits <= _INT8_BITS
        self.register_buffer("w_scale", layer.w_scale.detach().clone().float())
        self.register_buffer("w_zero", torch.zeros(layer.w_scale.numel(), dtype=torch.int32))

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits >= FP32_BITS:
            return x
        if self.a_bits > _INT8_BITS:
            return fake_quant_act(x, self.a_scale, self.a_bits, self.a_signed)
        qmin, qmax = act_levels(self.a_bits, self.a_signed)
        x = torch.clamp(x, qmin * self.a_scale, qmax * self.a_scale)
        lo, hi = (-128, 127) if self.a_signed else (0, 255)
        return torch.fake_quantize_per_tensor_affine(x, self.a_scale, 0, lo, hi)

    def _weight(self) -> torch.Tensor:
        w = self.inner.weight
        if not self.qdq_weight:
            return w
        return torch.fake_quantize_per_channel_affine(w, self.w_scale, self.w_zero, 0, -128, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._input(x), self._weight()
        if isinstance(self.inner, nn.Conv2d):
            return self.inner._conv_forward(x, w, self.inner.bias)
        return nn.functional.linear(x, w, self.inner.bias)


def standard_module(compressed: nn.Module) -> nn.Module:
    """A copy of ``compressed`` (eval mode) whose quantized layers are standard torch operators
    only; outputs equal the compressed model's up to float rounding."""
    out = copy.deepcopy(compressed).eval()
    quantized = [name for name, m in out.named_modules() if isinstance(m, QuantizedLayer)]
    for name in quantized:
        parent, _, leaf = name.rpartition(".")
        owner = out.get_submodule(parent) if parent else out
        setattr(owner, leaf, _StandardQuantizedLayer(out.get_submodule(name)))
    return out


def write_portable(compressed: nn.Module, example_input: torch.Tensor, out_dir: Path, threads: int) -> list[str]:
    """Write ``model.pt2`` (a ``torch.export`` program), ``model.onnx`` (QDQ, opset
    ``ONNX_OPSET``), ``sample_input.npy`` / ``sample_output.npy`` (the compressed torch model's
    output on the example input, to check any runtime against) and a ``README.md`` saying how to
    run each file, ``model.so`` included, on ``threads`` threads; returns the file names written."""
    model = standard_module(compressed)
    with torch.no_grad():
        expected = compressed(example_input)
    program = torch.export.export(model, (example_input,))
    torch.export.save(program, str(out_dir / "model.pt2"))
    onnx_program = torch.onnx.export(model, (example_input,), dynamo=True, opset_version=ONNX_OPSET,
                                     input_names=["input"], output_names=["output"], verbose=False)
    onnx_program.save(str(out_dir / "model.onnx"))
    np.save(out_dir / "sample_input.npy", example_input.numpy())
    np.save(out_dir / "sample_output.npy", expected.numpy())
    (out_dir / "README.md").write_text(_README.format(threads=threads, shape=list(example_input.shape)))
    return ["model.pt2", "model.onnx", "sample_input.npy", "sample_output.npy", "README.md"]


def run_onnx(path: Path, example_input: np.ndarray, profile: HardwareProfile) -> tuple[np.ndarray, Timing]:
    """Run ``model.onnx`` in ONNX Runtime on this CPU with the profile's thread count, once to
    warm up, then time it as TVM libraries are timed (``tuning.repeat`` repeats, each the mean of
    as many calls as fill ``tuning.min_repeat_ms``). Returns (output, Timing in ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = profile.threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: example_input}
    output = session.run(None, feed)[0]
    repeats = []
    for _ in range(profile.tuning.repeat):
        calls, start = 0, time.perf_counter()
        while calls == 0 or (time.perf_counter() - start) * 1e3 < profile.tuning.min_repeat_ms:
            session.run(None, feed)
            calls += 1
        repeats.append((time.perf_counter() - start) * 1e3 / calls)
    return output, Timing(float(np.median(repeats)), min(repeats), max(repeats), len(repeats))


_README = """# A compressed model exported by automc

None of these files needs automc to run. The input is one float32 tensor of shape {shape};
`sample_input.npy` is one, `sample_output.npy` what the compressed model returns for it.
Predicted and measured latencies (`config.json`) are for {threads} threads.

## model.so: the TVM library for the profile's target (what was measured)

```python
import numpy as np, tvm
from tvm import relax
vm = relax.VirtualMachine(tvm.runtime.load_module("model.so"), tvm.cpu())
y = vm["main"](tvm.runtime.tensor(np.load("sample_input.npy")))[0].numpy()
```
Run it with `TVM_NUM_THREADS={threads}` in the environment.

## model.onnx: ONNX with QuantizeLinear/DequantizeLinear at the chosen bit-widths

```python
import numpy as np, onnxruntime as ort
options = ort.SessionOptions(); options.intra_op_num_threads = {threads}
session = ort.InferenceSession("model.onnx", options, providers=["CPUExecutionProvider"])
y = session.run(None, {{"input": np.load("sample_input.npy")}})[0]
```

## model.pt2: a torch.export program (standard aten operators only)

```python
import numpy as np, torch
torch.set_num_threads({threads})
model = torch.export.load("model.pt2").module()
y = model(torch.from_numpy(np.load("sample_input.npy"))).detach().numpy()
```
"""
