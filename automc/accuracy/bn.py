"""BatchNorm recalibration: re-estimate running statistics after compression changed them."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, calib_batches: Sequence[torch.Tensor]) -> None:
    """Recompute every BatchNorm's running mean/var on ``calib_batches``, in place.

    Statistics are reset and re-estimated as a cumulative average over all batches
    (momentum None); only the BatchNorm layers run in train mode, the rest stays in eval
    (dropout off). Each BN keeps its momentum; the model is left in eval mode.

    Example:
        >>> recalibrate_bn(compressed, builtin.calib_batches)
    """
    bns = _batchnorms(model)
    if not bns:
        model.eval()
        return
    if len(calib_batches) == 0:
        raise ValueError("recalibrate_bn needs at least one calibration batch")
    model.eval()
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for batch in calib_batches:
            model(batch)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
