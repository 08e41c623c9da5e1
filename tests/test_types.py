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


def test_kernel_spec_identifies_by_its_fields_once_and_pickles_by_value():
    """The cached identity must cover every field (a field missing from ``ident`` would make
    two different kernels one dict key), take an integer for the int it equals (a numpy shape
    from a traced tensor is the kernel the store holds), and be rehashed in the process that
    unpickles."""
    import dataclasses
    import pickle

    import numpy as np

    k = KernelSpec(op="conv2d", batch=1, in_channels=8, out_channels=16, height=8, width=8, blocked_in=True)
    assert k._values == tuple(getattr(k, f.name) for f in dataclasses.fields(KernelSpec))
    for f in dataclasses.fields(KernelSpec):  # every field changes the identity
        other = KernelSpec(**{**k.to_dict(), f.name: not getattr(k, f.name) if f.type in (bool, "bool")
                              else getattr(k, f.name) + 1 if f.type in (int, "int") else "other"})
        assert other != k and other.key != k.key, f.name
    again = KernelSpec.from_key(k.key)
    assert again == k and hash(again) == hash(k) and {k: 1}[again] == 1
    assert pickle.loads(pickle.dumps(k)) == k and dataclasses.replace(k, width=9) != k
    same = KernelSpec(**{**k.to_dict(), "batch": np.int64(1), "height": np.int32(8), "blocked_in": 1})
    assert same == k and hash(same) == hash(k) and {k: 1}[same] == 1
