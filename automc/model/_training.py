"""Train a zoo model on digits once and cache its weights under ``cache_dir()/models``.

Shared by the built-in models other than ``demo-cnn`` (whose own loop in ``zoo`` predates this
one and is kept as it is, so that its cached weights stay valid).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from automc._paths import cache_dir

# (batch, epoch index) -> the batch the model sees, e.g. upsampled to the model's input size
Transform = Callable[[torch.Tensor, int], torch.Tensor]


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
                     batch_size: int = 64, seed: int = 0, weight_decay: float = 1e-4, max_shift: int = 2,
                     transform: Transform | None = None) -> nn.Module:
    """AdamW + one-cycle schedule, cross-entropy, random shifts of up to ``max_shift`` pixels
    (``torch.roll`` on the stored images, before ``transform``). Returns ``model`` in eval mode.

    Example:
        >>> data = load_digits_split()
        >>> model = train_classifier(ResNetSmall(), data.train_x, data.train_y, epochs=8, lr=3e-3)
    """
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx]
            if max_shift:
                shifts = tuple(torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist())
                xb = torch.roll(xb, shifts=shifts, dims=(xb.dim() - 2, xb.dim() - 1))
            if transform is not None:
                xb = transform(xb, epoch)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def load_or_train(file_name: str, build: Callable[[], nn.Module], train: Callable[[nn.Module], nn.Module],
                  verbose: bool = False, describe: Callable[[nn.Module], str] | None = None,
                  seed: int = 0) -> nn.Module:
    """``build()`` with the weights cached in ``cache_dir()/models/file_name``. When the file is
    missing, the model is built after ``torch.manual_seed(seed)`` (a fixed initialisation),
    trained with ``train`` on 2 torch threads (float sums, hence weights, depend on the thread
    count) and cached. ``describe`` adds e.g. the validation accuracy to the message printed
    when ``verbose``. Bump the version in ``file_name`` when the model or its training changes.

    Example:
        >>> model = load_or_train("resnet-small-v1.pt", ResNetSmall, lambda m: train_classifier(m, x, y, epochs=6, lr=3e-3))
    """
    path = cache_dir() / "models" / file_name
    if path.exists():
        model = build()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(seed)
        model = train(build())
    finally:
        torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    if verbose:
        extra = f" ({describe(model)})" if describe is not None else ""
        print(f"trained {path.stem} in {time.perf_counter() - start:.1f} s{extra}")
    return model.eval()
