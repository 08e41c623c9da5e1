"""The x86 packed kernels as seen from outside ``deploy``: which instruction set a target's
code uses, the blocked activation layout kept between packed kernels, and the tiling rules by
which the latency model counts a kernel's work. The kernels themselves stay private
(``_packed``, ``_tiling``, ``_cpu``); this is their public face."""

from automc.deploy._cpu import AVX2, AVX512_VNNI, KernelIsa, kernel_isa
from automc.deploy._packed import BLOCK, blocked_shape, depthwise_channel_lanes
from automc.deploy._tiling import register_tile, width_tile

__all__ = ["AVX2", "AVX512_VNNI", "BLOCK", "KernelIsa", "blocked_shape", "depthwise_channel_lanes", "kernel_isa",
           "register_tile", "width_tile"]
