from automc.types import Candidate, KernelSpec, LayerChoice


def test_candidate_json_round_trip():
    c = Candidate(layers={"a": LayerChoice(8, 8, 0.25, 0.5), "b": LayerChoice()}, cells={"blk": "skip"})
    assert Candidate.from_json(c.to_json()) == c
    assert c.choice("missing") == LayerChoice()
    assert c.cell("other") == "keep"


def test_kernel_spec_macs_and_key():
    k = KernelSpec(op="conv2d", batch=1, in_channels=64, out_channels=64, height=32, width=32,
                   kernel_size=3, stride=2, padding=1, groups=64)
    assert k.out_hw == (16, 16)
    assert k.macs == 64 * 16 * 16 * 9
    assert KernelSpec.from_dict(k.to_dict()) == k
    assert k.key != KernelSpec(**{**k.to_dict(), "dtype": "int8"}).key
