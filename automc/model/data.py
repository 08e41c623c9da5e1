"""scikit-learn's bundled digits, upsampled to 32×32, with a fixed seeded split.

Nothing is downloaded: the 1,797 8×8 images ship inside scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

DIGITS_SIZE = 32


@dataclass(frozen=True)
class DigitsSplit:
    """Train / calibration / validation tensors (N×1×32×32 float, labels int64)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    calib_x: torch.Tensor
    calib_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def load_digits_split(size: int = DIGITS_SIZE, seed: int = 0, n_calib: int = 256, n_val: int = 400) -> DigitsSplit:
    """Load digits, scale to [0, 1], upsample bilinearly to ``size``×``size`` and split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    y = torch.tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    n_train = len(y) - n_calib - n_val
    return DigitsSplit(
        train_x=x[:n_train], train_y=y[:n_train],
        calib_x=x[n_train:n_train + n_calib], calib_y=y[n_train:n_train + n_calib],
        val_x=x[n_train + n_calib:], val_y=y[n_train + n_calib:],
    )


def upsample_rgb(x: torch.Tensor, size: int) -> torch.Tensor:
    """N×1×h×w digits → N×3×``size``×``size`` (bilinear; the 3 channels are one expanded view,
    so a batch costs the memory of one channel until a layer copies it)."""
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy (fraction 0–1) of ``model`` in eval mode; ``transform`` maps each batch of
    ``x`` to the model's input (e.g. ``upsample_rgb``) so large inputs are made batch by batch."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size]
        if transform is not None:
            xb = transform(xb)
        correct += int((model(xb).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)
