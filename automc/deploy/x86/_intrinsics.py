"""The tensor intrinsics the packed int8 reductions (``_packed``) are tensorized with: 16 output
lanes (int32) accumulate the dot products of ``g`` input channels, one intrinsic per x86
instruction set (``_cpu.KernelIsa``)."""

from __future__ import annotations

from automc.deploy.x86._cpu import KernelIsa

VNNI = "automc_dot_16x4_vnni"
AVX2_I16 = "automc_dot_16x2_i16_avx2"


def register_intrinsic(isa: KernelIsa) -> str:
    """Register (once per process) the int8 reduction intrinsic of ``isa``; returns its name.
    Raises ValueError for an instruction set without one."""
    if isa.int8_group == 4:
        return _register_vnni()
    if isa.int8_group == 2:
        return _register_avx2()
    raise ValueError(f"the packed kernels have no int8 reduction on {isa.name}")


def _register_vnni() -> str:
    """Same description as the wheel's ``dot_16x4_vnni`` (C[16] += Σ_k u8 A[k] · s8 B[i, k]); the
    implementation passes ``vpdpbusd`` the i8x64 operands LLVM 22 declares. The broadcast 4×u8
    of A is reinterpreted as i8x64: LLVM types carry no signedness, the instruction still
    reads it as unsigned, so the result is exact."""
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(VNNI, allow_missing=True) is not None:
        return VNNI
    from automc.deploy._fast_tvm_import import fast_inspect

    with fast_inspect():
        from tvm.script import tirx as T
        from tvm.s_tir.tensor_intrin.x86 import dot_product_16x4_u8i8i32_desc

        @T.prim_func(s_tir=True)
        def vnni_impl(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
                      C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:4], B[0:16, 0:4])
                T.writes(C[0:16])
                a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
                a_i8x64 = T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64")
                C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                    C.vload([0], dtype="int32x16"), a_i8x64, B.vload([0, 0], dtype="int8x64"),
                    dtype="int32x16")

        TensorIntrin.register(VNNI, dot_product_16x4_u8i8i32_desc, vnni_impl, override=True)
    return VNNI


def _register_avx2() -> str:
    """C[16] += Σ_k A[k] · B[i, k] over k < 2, A and B int16 (u8 / s8 data and s8 weights
    widened): two ``vpmaddwd`` (each 8 lanes × 2 products summed to int32) and two ``vpaddd``.
    Exact: a pair sums to at most 2·255·128 in magnitude, where ``vpmaddubsw`` on the u8 / s8
    bytes themselves would saturate at 32767 (2·255·127 does not fit). Per multiply uop it does
    16 MACs, as ``vpmaddubsw`` + ``vpmaddwd`` do per two."""
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(AVX2_I16, allow_missing=True) is not None:
        return AVX2_I16
    from automc.deploy._fast_tvm_import import fast_inspect

    with fast_inspect():
        from tvm.script import tirx as T

        @T.prim_func(s_tir=True)
        def desc(A: T.Buffer((2,), "int16", offset_factor=1), B: T.Buffer((16, 2), "int16", offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:2], B[0:16, 0:2])
                T.writes(C[0:16])
                for i in T.serial(0, 16):
                    for k in T.serial(0, 2):
                        with T.sblock("update"):
                            vi, vk = T.axis.remap("SR", [i, k])
                            C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

        @T.prim_func(s_tir=True)
        def impl(A: T.Buffer((2,), "int16", offset_factor=1), B: T.Buffer((16, 2), "int16", offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:2], B[0:16, 0:2])
                T.writes(C[0:16])
                # the pair of A as one int32, broadcast to 8 pairs
                a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), 8),
                                  dtype="int16x16")
                C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], "int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a, B.vload([0, 0], "int16x16"),
                    dtype="int32x8")
                C[T.ramp(T.int32(8), 1, 8)] = C.vload([8], "int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a, B.vload([8, 0], "int16x16"),
                    dtype="int32x8")

        TensorIntrin.register(AVX2_I16, desc, impl, override=True)
    return AVX2_I16
