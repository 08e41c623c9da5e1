"""The zoo registry and the architectures beside demo-cnn: construction, shapes, parameter
counts, what automc's introspection and cells see, and TVM conversion of the untrained nets
matching torch (training itself is too slow for tests; it is cached on first ``load_builtin``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from automc.compress.cells import apply_cells, find_cells
from automc.errors import UserInputError
from automc.model.data import load_digits_split, upsample_rgb
from automc.model.introspect import introspect
from automc.model.mobilenetv2 import MobileNetV2
from automc.model.resnet_small import ResNetSmall
from automc.model.tiny_transformer import TinyTransformer
from automc.model.zoo import MODELS, BuiltinModel, load_builtin, register_builtin


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names():
    assert {"demo-cnn", "mobilenetv2", "resnet-small", "tiny-transformer"} <= set(MODELS)
    with pytest.raises(UserInputError, match="unknown model"):
        load_builtin("no-such-model")


def test_a_registered_model_is_built_by_name_and_listed_among_the_choices():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    x = torch.zeros(1, 4)
    register_builtin("test-linear", lambda verbose=False: BuiltinModel("test-linear", net, x, (x,), lambda m: 1.0))
    try:
        assert load_builtin("test-linear").model is net
        with pytest.raises(UserInputError, match="test-linear"):
            load_builtin("no-such-model")
    finally:
        del MODELS["test-linear"]


def test_upsample_rgb_is_a_view_of_one_channel():
    x = load_digits_split().val_x[:4]
    y = upsample_rgb(x, 224)
    assert y.shape == (4, 3, 224, 224)
    assert torch.equal(y[:, 0], y[:, 2]) and y.stride(1) == 0


def test_mobilenetv2_matches_torchvision_counts():
    torch.manual_seed(0)
    assert _n_params(MobileNetV2(num_classes=1000)) == 3_504_872  # torchvision mobilenet_v2
    model = MobileNetV2().eval()
    assert _n_params(model) == 2_236_682
    x = torch.randn(1, 3, 224, 224)
    assert model(x).shape == (1, 10)
    table = introspect(model, x)
    assert len(table) == 53  # stem, 2 + 16 × 3 block convs, head conv, classifier
    assert 295e6 < sum(layer.macs for layer in table.layers) < 305e6
    assert table["stem.0"].kind == "conv" and table["stem.0"].out_shape == (1, 32, 112, 112)
    assert table["blocks.1.expand.0"].kind == "pwconv" and table["blocks.1.dw.0"].kind == "dwconv"
    assert table["blocks.1.dw.0"].block == "blocks.1" and table["blocks.0.dw.0"].block is None
    assert table["classifier"].kind == "linear" and table["head_conv.0"].out_channels == 1280


def test_mobilenetv2_blocks_are_cells():
    model = MobileNetV2().eval()
    cells = find_cells(model)
    assert len(cells) == 16 and "blocks.0" not in cells  # the expand-ratio-1 block is not a cell
    assert sum(cells.values()) == 10  # residual blocks: 1 + 2 + 3 + 2 + 2
    x = torch.randn(1, 3, 224, 224)
    apply_cells(model, {"blocks.2": "skip", "blocks.4": "half"}, x)
    assert isinstance(model.blocks[2], torch.nn.Identity)
    assert model.blocks[4].expand[0].out_channels == 96
    assert model(x).shape == (1, 10)


def test_resnet_small_shapes():
    torch.manual_seed(0)
    model = ResNetSmall().eval()
    assert _n_params(model) == 174_970
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 10)
    table = introspect(model, x[:1])
    assert len(table) == 16 and table.names[0] == "stem.0" and table.names[-1] == "classifier"
    assert table["blocks.2.shortcut.0"].kind == "pwconv" and table["blocks.2.conv1.0"].stride == 2
    assert find_cells(model) == {}


def test_tiny_transformer_shapes_and_linear_layers():
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    assert _n_params(model) == 72_906
    x = torch.randn(3, 1, 32, 32)
    assert model(x).shape == (3, 10)
    table = introspect(model, x[:1])
    assert all(layer.kind == "linear" for layer in table) and len(table) == 10
    qkv = table["layers.0.attn.qkv"]
    assert qkv.in_shape == (1, 16, 64) and qkv.out_shape == (1, 16, 192)
    assert qkv.macs == 16 * 64 * 192
    # tokens are the 8×8 patches of the image, row-major
    tokens = model.tokens(torch.arange(32 * 32, dtype=torch.float32).reshape(1, 1, 32, 32))
    assert tokens.shape == (1, 16, 64) and tokens[0, 1, 0] == 8 and tokens[0, 4, 0] == 8 * 32


def _tvm_outputs(model: torch.nn.Module, x: torch.Tensor, profile) -> np.ndarray:
    import tvm
    from tvm import relax

    from automc.deploy.build import import_meta_schedule
    from automc.deploy.build import compile_module
    from automc.deploy.relax_lowering import lower_to_relax

    ms = import_meta_schedule()
    with tempfile.TemporaryDirectory() as tmp:  # an empty database: default schedules, no tuning
        db = ms.database.JSONDatabase(str(Path(tmp) / "w.json"), str(Path(tmp) / "r.json"), allow_missing=True)
        executable = compile_module(lower_to_relax(model, x, profile), profile, db)
    out = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
    return (out if hasattr(out, "numpy") else out[0]).numpy()


@pytest.mark.parametrize("build,shape", [(ResNetSmall, (1, 1, 32, 32)), (TinyTransformer, (1, 1, 32, 32)),
                                         (MobileNetV2, (1, 3, 224, 224))],
                         ids=["resnet-small", "tiny-transformer", "mobilenetv2"])
def test_tvm_conversion_matches_torch(build, shape, host_profile):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(_tvm_outputs(model, x, host_profile), want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_tiny_transformer_int8_lowering_matches_torch(host_profile):
    """The uniform int8 baseline of the default space: integer dense kernels in TVM, same outputs."""
    from automc.api import prepare
    from automc.compress import apply_candidate
    from automc.search.seeds import baseline_params
    from automc.search.space import candidate_from_params

    torch.manual_seed(0)
    model = TinyTransformer().eval()
    x = torch.randn(1, 1, 32, 32)
    calib = (torch.randn(16, 1, 32, 32),)
    ctx = prepare(model, x, lambda m: 0.0, host_profile, "default", calib)
    candidate = candidate_from_params(ctx.space, baseline_params(ctx.space)["int8"])
    assert sum(c.quantized for c in candidate.layers.values()) == 9  # every Linear but the classifier
    compressed = apply_candidate(model, candidate, x, calib)
    with torch.no_grad():
        want = compressed(x).numpy()
    np.testing.assert_allclose(_tvm_outputs(compressed, x, host_profile), want, atol=1e-4 * max(1.0, np.abs(want).max()))
