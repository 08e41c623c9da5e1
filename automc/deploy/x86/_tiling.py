"""Register tiles of the packed kernels (``_packed``, scheduled by ``_packed_schedule``), per
instruction set (``_cpu.KernelIsa``); the latency predictor's work model counts the same tiles."""

from __future__ import annotations

import functools

from automc.deploy.x86._cpu import AVX512_VNNI, KernelIsa


@functools.lru_cache(maxsize=None)  # pure; the latency predictor calls it per kernel it prices
def width_tile(width: int, isa: KernelIsa = AVX512_VNNI) -> int:
    """Output columns one conv tile accumulates in registers: a divisor of ``width`` up to
    ``isa.tile_columns``, or ``isa.pad_columns`` (then the kernel computes a few padded
    columns) when the best divisor is below ``isa.pad_below``."""
    best = max(d for d in range(1, isa.tile_columns + 1) if width % d == 0)
    return best if best >= isa.pad_below else isa.pad_columns


@functools.lru_cache(maxsize=None)
def register_tile(channel_blocks: int, columns: int, conv: bool = True,
                  isa: KernelIsa = AVX512_VNNI) -> tuple[int, int]:
    """The register tile of a packed conv (``conv``) or dense: (16-channel output blocks,
    columns — rows of a dense) it accumulates, for ``channel_blocks`` blocks over ``columns``
    (padded) columns.

    AVX-512 (16 zmm accumulators): two blocks × up to 8 columns dividing them (each weight
    vector loaded once for 8 columns); a conv whose blocks come in fours and columns in eights
    takes 4 × 4 instead, 8 loads per 16 FMAs instead of 10 (measured, 2 threads: 64→64 3×3 at
    56² u8 272 → 219 µs, fp32 776 → 754; at 8² and 16² 10–25% faster; 4 × 4 lost at 28
    columns, 7 a tile, and on the int8 dense 64×1024², 130 → 190 µs).

    Fewer accumulators (AVX2: 6 blocks-columns, two ymm each): the most columns dividing
    ``columns`` that fit, then the most blocks dividing ``channel_blocks`` that still fit,
    so a narrow row (a dense on one row) still keeps several independent accumulators."""
    if isa.accumulators >= 16:
        best = max(d for d in range(1, 9) if columns % d == 0)
        if conv and channel_blocks % 4 == 0 and columns % 8 == 0:
            return 4, 4
        return (2 if channel_blocks % 2 == 0 else 1), best
    budget = isa.accumulators
    ct = max(d for d in range(1, min(budget, isa.tile_columns) + 1) if columns % d == 0)
    bt = max(d for d in range(1, budget // ct + 1) if channel_blocks % d == 0)
    return bt, ct
