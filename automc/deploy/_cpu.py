"""Which LLVM targets the packed kernels (``_packed``) run on: AVX-512 for the fp32 and depthwise
kernels, AVX-512 VNNI for the int8 ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# LLVM CPUs with AVX-512 VNNI (AVX-VNNI-only CPUs such as alderlake lack the 512-bit form)
_VNNI_CPUS = frozenset({"cascadelake", "cooperlake", "icelake-client", "icelake-server", "tigerlake",
                        "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
                        "graniterapids-d", "diamondrapids", "znver4", "znver5"})


# and those with AVX-512F without VNNI (the fp32 kernels need 32 zmm registers, not VNNI)
_AVX512_CPUS = _VNNI_CPUS | frozenset({"skylake-avx512", "cannonlake", "knl", "knm"})


def _cpu_and_features(target: Mapping[str, Any] | Any) -> tuple[str, list[str]] | None:
    """(mcpu, mattr) of an LLVM target (a profile's target dict or a ``tvm.target.Target``)."""
    if not isinstance(target, Mapping):  # a tvm Target: read its attributes
        attrs = target.attrs
        target = {"kind": target.kind.name, "mcpu": attrs.get("mcpu", ""), "mattr": list(attrs.get("mattr", []))}
    if target.get("kind") != "llvm":
        return None
    mattr = target.get("mattr") or []
    mattr = mattr.split(",") if isinstance(mattr, str) else [str(m) for m in mattr]
    return str(target.get("mcpu", "")), mattr


def has_vnni(target: Mapping[str, Any] | Any) -> bool:
    """Whether an LLVM target has AVX-512 VNNI (the int8 kernels here)."""
    cpu = _cpu_and_features(target)
    return cpu is not None and (cpu[0] in _VNNI_CPUS or "+avx512vnni" in cpu[1])


def has_avx512(target: Mapping[str, Any] | Any) -> bool:
    """Whether an LLVM target has AVX-512F (the fp32 and depthwise kernels here)."""
    cpu = _cpu_and_features(target)
    return cpu is not None and (cpu[0] in _AVX512_CPUS or "+avx512f" in cpu[1])
