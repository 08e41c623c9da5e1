"""Which LLVM targets the packed kernels (``_packed``) run on, and with which instruction set
(``KernelIsa``): AVX-512 (fp32 and depthwise; with VNNI the int8 ones too) or AVX2 + FMA."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# LLVM CPUs with AVX-512 VNNI (AVX-VNNI-only CPUs such as alderlake lack the 512-bit form)
_VNNI_CPUS = frozenset({"cascadelake", "cooperlake", "icelake-client", "icelake-server", "tigerlake",
                        "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
                        "graniterapids-d", "diamondrapids", "znver4", "znver5"})


# and those with AVX-512F without VNNI (the fp32 kernels need 32 zmm registers, not VNNI)
_AVX512_CPUS = _VNNI_CPUS | frozenset({"skylake-avx512", "cannonlake", "knl", "knm"})

# and those with AVX2 and FMA but no AVX-512
_AVX2_CPUS = frozenset({"core-avx2", "haswell", "broadwell", "skylake", "kabylake", "coffeelake", "cometlake",
                        "alderlake", "raptorlake", "meteorlake", "arrowlake", "lunarlake", "gracemont",
                        "znver1", "znver2", "znver3", "x86-64-v3"})


@dataclass(frozen=True)
class KernelIsa:
    """How the packed kernels use one x86 instruction set. Every kernel keeps 16 output
    channels innermost (the blocked layout ``[N, C/16, H, W, 16]`` is the same on every x86
    host); on AVX2 a 16-lane vector is two ymm registers.

    ``int8_group``: input channels one int8 weight lane reduces, 4 with VNNI (``vpdpbusd``
    on u8 data, s8 data shifted by 128), 2 on AVX2 (``vpmaddwd`` on data and weights widened
    to int16, exact, no shift), None where integer groups=1 convs and dense layers stay on
    the generic path. ``accumulators``: 16-lane accumulators of a register tile (16 zmm of
    32; 6, i.e. 12 ymm of 16, leaving registers for the broadcast and the products).
    ``tile_columns``: most output columns a conv tile accumulates; ``pad_columns``: the
    tile a row is padded to when no divisor of its width of at least ``pad_below`` fits (on
    AVX2 a 2-column tile still holds 3 channel blocks, and an unpadded row needs no input
    stage where nothing else is padded: 14-wide rows ran 2× faster unpadded; a 1-column one
    reloads every weight a column, and 7-wide rows ran either way)."""

    name: str
    int8_group: int | None
    accumulators: int
    tile_columns: int
    pad_columns: int
    pad_below: int

    @property
    def shifts_s8(self) -> bool:
        """Whether s8 data runs as u8 = s8 + 128, with a ``128·Σw`` compensation (VNNI)."""
        return self.int8_group == 4


AVX512_VNNI = KernelIsa("avx512-vnni", 4, 16, 8, 8, 4)
AVX512 = KernelIsa("avx512", None, 16, 8, 8, 4)
AVX2 = KernelIsa("avx2", 2, 6, 6, 4, 2)


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


def has_avx2(target: Mapping[str, Any] | Any) -> bool:
    """Whether an LLVM target has AVX2 and FMA (AVX-512 targets included)."""
    cpu = _cpu_and_features(target)
    return cpu is not None and (cpu[0] in _AVX2_CPUS or has_avx512(target)
                                or {"+avx2", "+fma"} <= set(cpu[1]))


def kernel_isa(target: Mapping[str, Any] | Any) -> KernelIsa | None:
    """The instruction set the packed kernels use on an LLVM target; None where they do not
    run (not x86, or no AVX2)."""
    if has_avx512(target):
        return AVX512_VNNI if has_vnni(target) else AVX512
    return AVX2 if has_avx2(target) else None
