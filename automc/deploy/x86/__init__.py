"""Hand-scheduled x86 kernels (AVX-512 / AVX2; fp32 FMA, int8 VNNI or int16 ``vpmaddwd``) and
the blocked activation layout kept between them.

The modules behind this face stay private: ``_cpu`` (which instruction set a target's code
uses), ``_packed`` (the kernels as TIR), ``_packed_schedule`` (their schedules and the compile
pipeline applying them), ``_intrinsics`` (the int8 reductions they are tensorized with),
``_tiling`` (their register tiles) and ``_blocked`` (where activations stay blocked). The rest of
automc reaches them through the names below only: the lowering builds kernels with them, and the
latency model counts their work by the same tiling rules, so prediction follows what deploys.

Example::

    from automc.deploy import x86
    isa = x86.kernel_isa({"kind": "llvm", "mcpu": "znver4"})  # x86.AVX512_VNNI
    x86.register_tile(channel_blocks=4, columns=x86.width_tile(14, isa), isa=isa)
"""

from automc.deploy.x86._blocked import PackedConv, keep_blocked, plan_blocked
from automc.deploy.x86._cpu import AVX2, AVX512_VNNI, KernelIsa, kernel_isa
from automc.deploy.x86._packed import (BLOCK, PACK_BLOCK, blocked_shape, conv2d_func, dense_func,
                                       depthwise_channel_lanes, depthwise_func, depthwise_weight,
                                       pack_conv_weight, pack_dense_weight, shift_compensation, writes_blocked)
from automc.deploy.x86._packed_schedule import compile_relax, is_packed_func, schedule_fused
from automc.deploy.x86._tiling import register_tile, width_tile

__all__ = [
    # instruction sets
    "AVX2", "AVX512_VNNI", "KernelIsa", "kernel_isa",
    # the kernels and their weights
    "BLOCK", "PACK_BLOCK", "blocked_shape", "conv2d_func", "dense_func", "depthwise_channel_lanes",
    "depthwise_func", "depthwise_weight", "pack_conv_weight", "pack_dense_weight", "shift_compensation",
    "writes_blocked",
    # the blocked layout between kernels
    "PackedConv", "keep_blocked", "plan_blocked",
    # scheduling and compiling
    "compile_relax", "is_packed_func", "schedule_fused",
    # tiling rules (shared with the latency model)
    "register_tile", "width_tile",
]
