"""Schedules of the packed kernels (``_packed``): one hand schedule per reduction kind (register
tile for the target's instruction set, vectorize or tensorize with ``_intrinsics``, epilogue
computed at the tile), and the Relax compile pipeline that applies them between FuseTIR and the
tuning database."""

from __future__ import annotations

from typing import Any

from automc.deploy.x86._cpu import AVX512_VNNI, KernelIsa, kernel_isa
from automc.deploy.x86._intrinsics import register_intrinsic
from automc.deploy.x86._packed import _DW_LANES, BLOCK, CONV_BLOCK, DENSE_BLOCK, DW_BLOCK, PACK_BLOCK
from automc.deploy.x86._tiling import register_tile


def _block_names(func) -> set[str]:
    """Names of the root-level blocks (stages) of an unscheduled PrimFunc."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}


_REDUCTIONS = (CONV_BLOCK, DENSE_BLOCK, DW_BLOCK)


def is_packed_func(func) -> bool:
    """Whether a (fused) PrimFunc, or an IRModule of one (a MetaSchedule task), holds one of
    the packed reductions here."""
    from tvm import IRModule, tirx

    if isinstance(func, IRModule):
        funcs = [f for f in func.functions.values() if isinstance(f, tirx.PrimFunc)]
        func = funcs[0] if len(funcs) == 1 else None
    return isinstance(func, tirx.PrimFunc) and bool(set(_REDUCTIONS) & _block_names(func))


def _epilogue_at(sch, skip: set[str], tile_loop, fuse: bool) -> Any:
    """Inline every elementwise stage into the one writing the function's output and compute
    that at ``tile_loop``, so the accumulator tile is consumed while in cache; returns that
    block. Without ``fuse`` (the fallback) the epilogue stays its own parallel loop nest;
    returns None."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if not fuse:
        for block in blocks:
            if sch.get(block).name_hint not in skip:
                sch.parallel(sch.get_loops(block)[0])
        return None
    for block in blocks[:-1]:
        if sch.get(block).name_hint not in skip:
            sch.compute_inline(block)
    sch.reverse_compute_at(blocks[-1], tile_loop)
    return blocks[-1]


def _parallel_pack(sch, outer_loops: int) -> None:
    """Parallelize the input stage over its first ``outer_loops`` loops. From NCHW data it stays
    scalar on purpose (a vectorized guarded gather was measured 12x slower, 253 vs 22 us); from
    blocked data it copies a pixel's 16 contiguous channels, one vector. No stage, nothing to do."""
    if PACK_BLOCK not in {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))}:
        return
    ploops = sch.get_loops(sch.get_sblock(PACK_BLOCK))
    sch.parallel(sch.fuse(*ploops[:outer_loops]))
    if len(ploops) == 5 and int(sch.get(ploops[-1]).extent) == BLOCK:  # from blocked data
        sch.vectorize(ploops[-1])
    else:
        sch.unroll(ploops[-1])


def _schedule_conv(sch, intrin: str | None, isa: KernelIsa, fuse_epilogue: bool) -> None:
    conv = sch.get_sblock(CONV_BLOCK)
    b, o, y, x, o16, rc, ry, rx, *r4 = sch.get_loops(conv)
    ot, xt = register_tile(*(int(sch.get(lp).extent) for lp in (o, x)), isa=isa)
    oo, oi = sch.split(o, [None, ot])
    xo, xi = sch.split(x, [None, xt])
    sch.reorder(b, oo, y, xo, rc, ry, rx, oi, xi, o16, *r4)
    outer = sch.fuse(b, oo, y)
    blocked_out = _writes_blocked(sch)
    # a blocked output is written a register tile at a time; an NCHW one a row at a time
    last = _epilogue_at(sch, {PACK_BLOCK, CONV_BLOCK}, xo if blocked_out else outer, fuse_epilogue)
    # the register tile (ot x xt x 16 accumulators) gets its own buffer, written back per tile:
    # LLVM then keeps it in registers across the whole reduction (the tensorize description
    # wants global scope, and the buffer is compacted to the tile anyway)
    local = sch.cache_write(conv, 0, "global")
    if not (blocked_out and last is not None):  # (else the write-back lands in the tile already)
        sch.reverse_compute_at(local, xo)
    _parallel_pack(sch, 3 if r4 else 2)
    sch.parallel(outer)
    if last is not None and blocked_out:
        _vectorize_inner(sch, last)  # (blocks, columns, 16 channels): already contiguous
    elif last is not None:
        _channels_inner(sch, last)
    _vectorize_tile(sch, conv, local, rc, o16, xi, oi, intrin=intrin)


def _channels_inner(sch, block) -> None:
    """Epilogue of a conv tile, (channels, columns) loops: make 16 channels innermost (unrolled),
    so the tile is read contiguously; measured 51 vs 77 us (vectorized columns) at 64x56x56."""
    loops = sch.get_loops(block)
    if len(loops) < 3:
        return
    channels, columns = loops[-2:]
    try:
        outer, inner = sch.split(channels, [None, 16])
        sch.reorder(outer, columns, inner)
        sch.unroll(inner)
    except Exception:  # an unusual epilogue shape: leave its loops as they are
        pass


def _vectorize_inner(sch, block) -> None:
    loops = sch.get_loops(block)
    if loops:
        try:
            sch.vectorize(loops[-1])
        except Exception:  # e.g. a predicate on a padded tile: leave it scalar
            pass


def _vectorize_tile(sch, block, local, reduction, lanes, *unrolled, intrin: str | None = None) -> None:
    """The end shared by all schedules here: vectorize the tile's write-back (``local``), the
    16 ``lanes`` (fp32: before the reduction is split, as the vectorizer needs) or tensorize
    them with ``intrin`` (VNNI: after), split the zeroing of the accumulators off the
    ``reduction`` loop and vectorize it, unroll the tile's other loops."""
    _vectorize_inner(sch, local)
    if intrin is None:
        sch.vectorize(lanes)
    for loop in unrolled:
        sch.unroll(loop)
    init = sch.decompose_reduction(block, reduction)
    sch.vectorize(sch.get_loops(init)[-1])
    if intrin is not None:
        sch.tensorize(lanes, intrin)


def _schedule_dense(sch, intrin: str | None, isa: KernelIsa, fuse_epilogue: bool) -> None:
    dense = sch.get_sblock(DENSE_BLOCK)
    i, j, j16, rk, *r4 = sch.get_loops(dense)
    jt, it = register_tile(*(int(sch.get(lp).extent) for lp in (j, i)), conv=False, isa=isa)
    io, ii = sch.split(i, [None, it])
    jo, ji = sch.split(j, [None, jt])
    sch.reorder(jo, io, rk, ii, ji, j16, *r4)
    outer = sch.fuse(jo, io)
    last = _epilogue_at(sch, {PACK_BLOCK, DENSE_BLOCK}, outer, fuse_epilogue)
    local = sch.cache_write(dense, 0, "global")  # the register tile, as for conv
    _parallel_pack(sch, 1)
    sch.parallel(outer)
    if last is not None:
        _vectorize_inner(sch, last)
    _vectorize_tile(sch, dense, local, rk, j16, ii, ji, intrin=intrin)


def _schedule_depthwise(sch, intrin: str | None, isa: KernelIsa, fuse_epilogue: bool) -> None:
    """Parallel over channels; per channel the padded input plane is staged (in cache) and
    the output computed 2 rows × 16 columns at a time, so each staged input row loaded feeds
    both rows (32×112² u8: 234 → 139 µs with its requantize epilogue, 2 threads)."""
    del intrin  # no channel reduction to tensorize
    dw = sch.get_sblock(DW_BLOCK)
    if len(sch.get_loops(dw)) == 7:
        _schedule_depthwise_channel_lanes(sch, dw, isa, fuse_epilogue)
        return
    b, c, y, x, ry, rx = sch.get_loops(dw)
    rows = []
    # 2 rows paid on planes ≥ 48 wide and cost on 28-wide ones (32×112² 192 → 140 µs, 144×56²
    # 153 → 135; 192×28² 75 → 118, measured): register pressure of 2 rows × 2 vectors
    if int(sch.get(y).extent) % 2 == 0 and int(sch.get(x).extent) >= 48:
        y, yi = sch.split(y, [None, 2])
        rows = [yi]
    xo, xi = sch.split(x, [None, _DW_LANES])
    sch.reorder(b, c, y, xo, ry, rx, *rows, xi)
    outer = sch.fuse(b, c)
    last = _epilogue_at(sch, {PACK_BLOCK, DW_BLOCK}, y, fuse_epilogue)
    local = sch.cache_write(dw, 0, "global")
    sch.reverse_compute_at(local, xo)
    _stage_plane(sch, outer)
    sch.parallel(outer)
    if last is not None:
        _vectorize_inner(sch, last)
    _vectorize_tile(sch, dw, local, ry, xi, rx, ry, *rows)


def _schedule_depthwise_channel_lanes(sch, dw, isa: KernelIsa, fuse_epilogue: bool) -> None:
    """A depthwise conv on channel lanes (blocked input, or a plane narrower than a vector:
    ``_packed.depthwise_channel_lanes``): parallel over 16-channel groups, each group's padded
    planes staged channels-innermost, a tile of up to 8 output columns × 16 channels per
    register block. A blocked output's epilogue runs per output row, 16 channels a vector; an
    NCHW one per group, reading the tile 16 channels at a time as the conv's does."""
    b, o, y, x, c16, ry, rx = sch.get_loops(dw)
    _, xt = register_tile(1, int(sch.get(x).extent), isa=isa)  # one 16-channel group a tile
    xo, xi = sch.split(x, [None, xt])
    blocked_out = _writes_blocked(sch)
    band = _row_band(int(sch.get(y).extent)) if blocked_out else int(sch.get(y).extent)
    yo, y = sch.split(y, [None, band])
    sch.reorder(b, o, yo, y, xo, ry, rx, xi, c16)
    outer = sch.fuse(b, o, yo)
    last = _epilogue_at(sch, {PACK_BLOCK, DW_BLOCK}, y if blocked_out else outer, fuse_epilogue)
    local = sch.cache_write(dw, 0, "global")
    sch.reverse_compute_at(local, xo)
    pack = sch.get_sblock(PACK_BLOCK)
    sch.compute_at(pack, outer)
    try:
        sch.vectorize(sch.get_loops(pack)[-1])  # 16 channels of one pixel: one guard for all
    except Exception:
        sch.unroll(sch.get_loops(pack)[-1])
    sch.parallel(outer)
    if last is not None:
        loops = sch.get_loops(last)
        if blocked_out:
            sch.vectorize(loops[-1])
        elif len(loops) >= 4:  # (group, channels, rows, columns): pixels outer, 16 channels inner
            pixels = sch.fuse(*loops[-2:])
            sch.reorder(pixels, loops[-3])
            sch.unroll(loops[-3])
    _vectorize_tile(sch, dw, local, ry, c16, rx, ry, xi)


def _row_band(rows: int) -> int:
    """Output rows a depthwise task stages input for at once: the largest divisor of ``rows`` up
    to ``_DW_BAND``, so a wide plane's band stays in cache and the bands feed both threads."""
    return max(d for d in range(1, _DW_BAND + 1) if rows % d == 0)


# measured on MobileNetV2 int8 (2 threads): the 32x112^2 depthwise conv 265 us staging its whole
# plane, 131 us 8 rows a band; 4 and 16 rows were no faster (one noisy run of the model each)
_DW_BAND = 8


def _writes_blocked(sch) -> bool:
    """Whether the function writes a blocked tensor (``_packed.blocked_shape``): its last
    stage, not yet scheduled, loops over 5 axes, 16 channels innermost."""
    loops = sch.get_loops(sch.get_child_blocks(sch.get_sblock("root"))[-1])
    return len(loops) == 5 and int(sch.get(loops[-1]).extent) == BLOCK


def _stage_plane(sch, channel_loop) -> None:
    """Compute the depthwise input stage per channel (a plane that stays in cache), its zero
    border written apart from the interior copy where the stage allows (``decompose_padding``:
    unit stride), so the copy is a branch-free loop LLVM vectorizes; the guarded per-element
    copy it replaces took a third of a 32×112² layer (85 of 234 µs)."""
    pack = sch.get_sblock(PACK_BLOCK)
    sch.compute_at(pack, channel_loop)
    try:
        sch.decompose_padding(pack, sch.get_loops(pack)[1])
    except Exception:  # stride-phase split rows: the interior is not a box
        sch.unroll(sch.get_loops(pack)[-1])


_SCHEDULES = {CONV_BLOCK: _schedule_conv, DENSE_BLOCK: _schedule_dense, DW_BLOCK: _schedule_depthwise}


def schedule_fused(func, isa: KernelIsa = AVX512_VNNI):
    """Hand-schedule a (fused) PrimFunc holding a packed reduction built for ``isa`` (register
    tiles, int8 intrinsic); marked ``tirx.is_scheduled`` so MetaSchedule neither tunes nor
    replaces it. Raises when a schedule primitive fails."""
    from tvm import s_tir

    blocks = _block_names(func)
    reduction = next(name for name in _REDUCTIONS if name in blocks)
    schedule = _SCHEDULES[reduction]
    # the int8 intrinsic when a channel reduction accumulates integers
    intrin = register_intrinsic(isa) if reduction != DW_BLOCK and _accumulates_integers(func, reduction) else None
    try:
        sch = s_tir.Schedule(func)
        schedule(sch, intrin, isa, fuse_epilogue=True)
    except Exception:  # an epilogue FuseOps built that cannot move into the tile: keep it apart
        sch = s_tir.Schedule(func)
        schedule(sch, intrin, isa, fuse_epilogue=False)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def _accumulates_integers(func, reduction: str) -> bool:
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    return str(sch.get(sch.get_sblock(reduction)).body.buffer.dtype) == "int32"


def schedule_module(mod, isa: KernelIsa):
    """``mod`` with each packed PrimFunc hand-scheduled for ``isa`` (see ``schedule_fused``)."""
    for gvar, func in list(mod.functions.items()):
        if is_packed_func(func) and not func.attrs.get("tirx.is_scheduled", False):
            mod[gvar] = schedule_fused(func.with_attr("global_symbol", gvar.name_hint), isa).with_attr(
                "global_symbol", gvar.name_hint)
    return mod


def compile_relax(database, mod, target):
    """``meta_schedule.relax_integration.compile_relax`` with the packed functions hand-scheduled
    right after FuseTIR (the same fusion passes, so the other tasks' database keys still match),
    before the database is applied. Returns the Relax ``Executable``."""
    import tvm
    from tvm import relax
    from tvm.relax import pipeline as stock
    from tvm.relax.transform import MetaScheduleApplyDatabase

    isa = kernel_isa(target)
    if isa is None:
        raise ValueError(f"packed kernels do not run on target {target}")
    rt = relax.transform
    try:
        lower = stock.dataflow_lower_passes(target) + stock.finalize_passes(target)
    except (ValueError, AttributeError):  # the CPU backend has none registered: compile_relax's list
        lower = [rt.RewriteDataflowReshape(), rt.ToNonDataflow(), rt.RemovePurityChecking(), rt.CallTIRRewrite(),
                 rt.StaticPlanBlockMemory(), rt.LowerAllocTensor(), rt.KillAfterLastUse(), rt.LowerRuntimeBuiltin(),
                 rt.ComputePrimValue(), rt.VMShapeLower(), rt.AttachGlobalSymbol()]
    try:
        dispatch = stock.library_dispatch_passes(target)
    except (ValueError, AttributeError):
        dispatch = []

    @tvm.transform.module_pass(opt_level=3)
    def pipeline(mod, _ctx):
        fuse = [*dispatch, rt.LegalizeOps(), rt.AnnotateTIROpPattern(), rt.FoldConstant(), rt.FuseOps(), rt.FuseTIR()]
        mod = schedule_module(tvm.transform.Sequential(fuse)(mod), isa)
        mod = MetaScheduleApplyDatabase()(mod)
        return tvm.transform.Sequential(lower)(mod)

    with target, database, tvm.transform.PassContext(opt_level=3):
        return relax.build(mod, target=target, relax_pipeline=pipeline)
