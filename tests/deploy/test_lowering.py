"""The lowering: what is predicted is what runs. Real TVM builds, real demo model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automc.accuracy import recalibrate_bn
from automc.compress import apply_candidate
from automc.deploy import x86
from automc.devices import tvm_target
from automc.deploy.lower import deploy_module, kernel_specs
from automc.deploy.relax_lowering import lower_to_relax
from automc.types import Candidate, LayerChoice

INT8 = LayerChoice(w_bits=8, a_bits=8)


@pytest.fixture(scope="module")
def mixed(demo):
    cand = Candidate(layers={"blocks.1.expand.0": LayerChoice(8, 8, prune=0.5),
                             "blocks.2.project.0": LayerChoice(rank=0.5),
                             "blocks.3.expand.0": LayerChoice(4, 8),
                             "head_conv.0": INT8, "classifier": INT8},
                     cells={"blocks.4": "skip"})
    model = apply_candidate(demo.model, cand, demo.example_input, demo.calib_batches[:2])
    recalibrate_bn(model, demo.calib_batches[:2])
    return model.eval()


def test_kernel_specs_follow_the_compression(mixed, demo, host_profile):
    specs = kernel_specs(mixed, demo.example_input, host_profile)
    by_shape = [(k.in_channels, k.out_channels, k.groups, k.dtype) for k in specs]
    assert (16, 32, 1, "int8") in by_shape            # pruned expand, int8
    assert (32, 32, 32, "float32") in by_shape         # its depthwise shrank with it
    assert (96, 12, 1, "float32") in by_shape and (12, 24, 1, "float32") in by_shape  # low-rank: two layers
    assert (24, 96, 1, "int8") in by_shape             # 4-bit weights run on the int8 kernel
    assert not any(k.in_channels == 128 for k in specs)  # blocks.4 skipped
    assert specs[-1].op == "dense" and specs[-1].dtype == "int8"
    assert sum(k.act == "relu6" for k in specs) >= 8


def test_deploy_module_folds_batchnorm(mixed, demo, host_profile):
    deployed, integer = deploy_module(mixed, host_profile)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.modules())
    assert set(integer) == {"blocks.1.expand.0", "blocks.3.expand.0", "head_conv.0", "classifier"}
    assert integer["blocks.3.expand.0"].w_bits == 4


def test_a_deploy_module_sharing_tensors_is_the_exported_one_and_leaves_the_model_alone(mixed, demo, host_profile):
    before = {k: v.clone() for k, v in mixed.state_dict().items() if isinstance(v, torch.Tensor)}
    modes = [m.training for m in mixed.modules()]
    exported, integer = deploy_module(mixed, host_profile)
    shared, shared_integer = deploy_module(mixed, host_profile, share_tensors=True)
    assert shared_integer == integer
    assert [(n, type(m)) for n, m in shared.named_modules()] == [(n, type(m)) for n, m in exported.named_modules()]
    exported_state = exported.state_dict()
    for name, t in shared.state_dict().items():
        if isinstance(t, torch.Tensor):
            assert torch.equal(t, exported_state[name]), name  # folded weights too
    with torch.no_grad():
        assert torch.equal(shared(demo.example_input), exported(demo.example_input))
    mixed.train()  # the copy is put in eval mode: the model handed in must keep its own mode
    try:
        kernel_specs(mixed, demo.example_input, host_profile)
        assert all(m.training for m in mixed.modules())
    finally:
        mixed.eval()
    after = mixed.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # nothing folded into it
    assert [m.training for m in mixed.modules()] == modes
    assert any(p is q for p in shared.parameters() for q in mixed.parameters())  # shared, not copied


def test_integer_lowering_runs_and_matches_torch(mixed, demo, host_profile):
    import tvm
    from tvm import relax

    mod = lower_to_relax(mixed, demo.example_input, host_profile)
    text = mod.script()
    # 3 integer convs + 1 integer dense: generic int32 ops, or packed kernels (int32 out) on VNNI profiles
    packed_int32 = [line for line in text.splitlines() if "R.call_tir(cls." in line and 'dtype="int32"' in line]
    assert text.count('out_dtype="int32"') + len(packed_int32) == 4
    # post-ReLU6 inputs quantize unsigned: u8, or int16 holding u8 values where the packed
    # kernels multiply int16 (AVX2, ``lower.activation_dtype``)
    isa = x86.kernel_isa(host_profile.target)
    assert f'dtype="{"int16" if isa is not None and isa.int8_group == 2 else "uint8"}"' in text
    executable = tvm.compile(mod, tvm_target(host_profile))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = demo.calib_batches[0][:1]
    got = vm["main"](tvm.runtime.tensor(x.numpy()))[0].numpy()
    with torch.no_grad():
        want = mixed(x).numpy()
    # integer kernels vs fake-quant float: equal up to rounding at quantization boundaries
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max(), (got, want)
    assert got.argmax() == want.argmax()
