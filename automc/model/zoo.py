"""Built-in models, looked up by name (as timm does): each comes with its data and evaluator."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from automc._paths import cache_dir
from automc.errors import UserInputError
from automc.model.data import DigitsSplit, accuracy, load_digits_split
from automc.model.demo_cnn import DemoCNN


@dataclass(frozen=True)
class BuiltinModel:
    """A trained model with what a search needs: example input, calibration data, evaluator."""

    name: str
    model: nn.Module
    example_input: torch.Tensor
    calib_batches: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]


def _train_demo_cnn(data: DigitsSplit, seed: int = 0, epochs: int = 12) -> DemoCNN:
    torch.manual_seed(seed)
    model = DemoCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(data.train_y) + 63) // 64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(data.train_y), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            # small random shifts: the upsampled digits are otherwise easy to overfit
            xb = torch.roll(data.train_x[idx], shifts=tuple(torch.randint(-2, 3, (2,), generator=gen).tolist()), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def demo_cnn(verbose: bool = False) -> BuiltinModel:
    """The embedded default: DemoCNN trained on digits (trained once, then cached)."""
    data = load_digits_split()
    path = cache_dir() / "models" / "demo-cnn-v3.pt"
    model = DemoCNN()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        start = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(2)  # fixed: float sums differ with the thread count, and so would the weights
        try:
            model = _train_demo_cnn(data)
        finally:
            torch.set_num_threads(threads)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
        if verbose:
            print(f"trained demo-cnn in {time.perf_counter() - start:.1f} s "
                  f"(val accuracy {accuracy(model, data.val_x, data.val_y):.4f})")
    model.eval()
    calib = tuple(data.calib_x[i:i + 64] for i in range(0, len(data.calib_y), 64))
    return BuiltinModel(
        name="demo-cnn",
        model=model,
        example_input=data.val_x[:1].clone(),
        calib_batches=calib,
        evaluate=lambda m: accuracy(m, data.val_x, data.val_y),
    )


MODELS: dict[str, Callable[..., BuiltinModel]] = {"demo-cnn": demo_cnn}


def load_builtin(name: str, verbose: bool = False) -> BuiltinModel:
    """Build a registered model by name."""
    if name not in MODELS:
        raise UserInputError(f"--model: unknown model '{name}'; choose one of {sorted(MODELS)}")
    return MODELS[name](verbose=verbose)
