import torch

from automc.model.data import accuracy, load_digits_split
from automc.model.introspect import introspect


def test_demo_cnn_is_trained_and_accurate(demo):
    data = load_digits_split()
    acc = accuracy(demo.model, data.val_x, data.val_y)
    assert acc >= 0.97, acc
    assert demo.evaluate(demo.model) == acc
    assert demo.example_input.shape == (1, 1, 32, 32)


def test_split_is_fixed_and_disjoint():
    a, b = load_digits_split(), load_digits_split()
    assert torch.equal(a.val_x, b.val_x)
    assert len(a.train_y) + len(a.calib_y) + len(a.val_y) == 1797


def test_introspect_layer_table(demo):
    table = introspect(demo.model, demo.example_input)
    kinds = {l.name: l.kind for l in table}
    assert kinds["stem.0"] == "conv"
    assert kinds["blocks.0.dw.0"] == "dwconv"
    assert kinds["blocks.0.expand.0"] == "pwconv"
    assert kinds["classifier"] == "linear"
    exp = table["blocks.1.expand.0"]
    assert exp.in_shape == (1, 16, 32, 32) and exp.out_shape == (1, 64, 32, 32)
    assert exp.macs == 16 * 64 * 32 * 32 and exp.params == 16 * 64
    assert table["blocks.1.dw.0"].block == "blocks.1"
    assert table["stem.0"].block is None
    assert sum(layer.params for layer in table.layers) == sum(
        p.numel() for n, p in demo.model.named_parameters() if not n.endswith((".1.weight", ".1.bias")))  # all but BatchNorm


def test_introspect_any_module():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    table = introspect(model, torch.randn(3, 8))
    assert table.names == ("0", "2")
    assert table["0"].macs == 3 * 8 * 16
