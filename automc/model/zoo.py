"""Built-in models, looked up by name (as timm does): each comes with its data and evaluator.

| name | architecture | input | trained on digits |
|---|---|---|---|
| ``demo-cnn`` | :class:`~automc.model.demo_cnn.DemoCNN` (MobileNet-style, 40 k params) | 1×1×32×32 | yes, ≈1 min, cached |
| ``resnet-small`` | :class:`~automc.model.resnet_small.ResNetSmall` (basic blocks, 0.17 M) | 1×1×32×32 | yes, 6 epochs, cached |
| ``tiny-transformer`` | :class:`~automc.model.tiny_transformer.TinyTransformer` (2 layers, d 64, 73 k) | 1×1×32×32 | yes, 24 epochs, cached |
| ``mobilenetv2`` | :class:`~automc.model.mobilenetv2.MobileNetV2` (torchvision's layers, 2.2 M) | 1×3×224×224 | no: latency benchmark only, see ``mobilenetv2()`` |

Each trains once, seeded, and is cached under ``AUTOMC_CACHE``; its validation accuracy is printed
when it is trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from automc.errors import UserInputError
from automc.model._training import load_or_train, train_classifier
from automc.model.data import DigitsSplit, accuracy, load_digits_split, upsample_rgb
from automc.model.demo_cnn import DemoCNN
from automc.model.mobilenetv2 import MobileNetV2
from automc.model.resnet_small import ResNetSmall
from automc.model.tiny_transformer import TinyTransformer


MOBILENETV2_SIZE = 224
RESNET_EPOCHS = 6
TRANSFORMER_EPOCHS = 24
TRANSFORMER_LR = 2e-3


@dataclass(frozen=True)
class BuiltinModel:
    """A model with what a search needs: example input, calibration data, evaluator, and the
    unlabelled training inputs recovery distils on (empty where there is no training split).
    Trained on digits, except the latency-benchmark ``mobilenetv2`` (its accuracy is
    meaningless, so it has no training inputs)."""

    name: str
    model: nn.Module
    example_input: torch.Tensor
    calib_batches: tuple[torch.Tensor, ...]
    evaluate: Callable[[nn.Module], float]
    train_batches: tuple[torch.Tensor, ...] = ()


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
    # _train_demo_cnn seeds and builds its own model, so these weights equal those cached by
    # earlier versions (the model load_or_train builds is only used when loading)
    model = load_or_train("demo-cnn-v3.pt", DemoCNN, lambda _: _train_demo_cnn(data), verbose, _describe(data))
    return _digits32("demo-cnn", model, data)


def _bn_recalibrated(model: nn.Module, batches: tuple[torch.Tensor, ...]) -> nn.Module:
    """BatchNorm running statistics set to the cumulative average over ``batches`` (no gradient
    step): the untrained net then sees realistic activation ranges, as int8 calibration needs."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for xb in batches:
            model(xb)
    return model.eval()


def mobilenetv2(verbose: bool = False) -> BuiltinModel:
    """MobileNetV2 (torchvision's layers, 10 classes) at 1×3×224×224: a **latency-benchmark
    model** — untrained, so its accuracy (≈ chance, 0.1) means nothing.

    Why untrained (measured on this 2-core host, shared): one epoch of the 1,141 training
    digits at 224×224 took 153 s of CPU time per core (690 s wall with other jobs running), so
    even the 3 epochs a from-scratch MobileNetV2 would need at the least exceed the ~4 minutes
    a built-in model may take to train. The weights are torchvision's initialisation from a
    fixed seed with BatchNorm statistics recalibrated on the calibration digits (cached), so
    activations, hence int8 scales, are realistic. Its data are the demo's 32×32 digits
    upsampled to 224×224 and repeated over 3 channels, batch by batch (``upsample_rgb``).
    """
    data = load_digits_split()
    calib = tuple(upsample_rgb(data.calib_x[i:i + 32], MOBILENETV2_SIZE) for i in range(0, 128, 32))
    model = load_or_train("mobilenetv2-bench-v1.pt", lambda: MobileNetV2(num_classes=10),
                          lambda m: _bn_recalibrated(m, calib), verbose)
    return BuiltinModel(
        name="mobilenetv2",
        model=model,
        example_input=upsample_rgb(data.val_x[:1], MOBILENETV2_SIZE).contiguous(),
        calib_batches=calib,
        evaluate=lambda m: accuracy(m, data.val_x, data.val_y, batch_size=50,
                                    transform=lambda x: upsample_rgb(x, MOBILENETV2_SIZE)),
    )


def _digits32(name: str, model: nn.Module, data: DigitsSplit) -> BuiltinModel:
    """A model of 1×1×32×32 digits with the demo's example input, calibration batches and evaluator."""
    model.eval()
    return BuiltinModel(
        name=name,
        model=model,
        example_input=data.val_x[:1].clone(),
        calib_batches=tuple(data.calib_x[i:i + 64] for i in range(0, len(data.calib_y), 64)),
        evaluate=lambda m: accuracy(m, data.val_x, data.val_y),
        train_batches=tuple(data.train_x[i:i + 64] for i in range(0, len(data.train_y), 64)),
    )


def _describe(data: DigitsSplit) -> Callable[[nn.Module], str]:
    return lambda m: f"val accuracy {accuracy(m, data.val_x, data.val_y):.4f}"


def resnet_small(verbose: bool = False) -> BuiltinModel:
    """ResNetSmall trained on 32×32 digits (trained once, then cached)."""
    data = load_digits_split()
    model = load_or_train(
        "resnet-small-v1.pt", ResNetSmall,
        lambda m: train_classifier(m, data.train_x, data.train_y, epochs=RESNET_EPOCHS, lr=3e-3),
        verbose, _describe(data))
    return _digits32("resnet-small", model, data)


def tiny_transformer(verbose: bool = False) -> BuiltinModel:
    """TinyTransformer trained on 32×32 digits (trained once, then cached)."""
    data = load_digits_split()
    model = load_or_train(
        "tiny-transformer-v1.pt", TinyTransformer,
        lambda m: train_classifier(m, data.train_x, data.train_y, epochs=TRANSFORMER_EPOCHS, lr=TRANSFORMER_LR,
                                   batch_size=32, weight_decay=0.05),
        verbose, _describe(data))
    return _digits32("tiny-transformer", model, data)


MODELS: dict[str, Callable[..., BuiltinModel]] = {
    "demo-cnn": demo_cnn,
    "resnet-small": resnet_small,
    "tiny-transformer": tiny_transformer,
    "mobilenetv2": mobilenetv2,
}


def register_builtin(name: str, factory: Callable[..., BuiltinModel]) -> None:
    """Make ``factory`` the built-in model ``name`` (``--model NAME``, ``load_builtin(NAME)``).
    ``factory(verbose=False)`` returns a ``BuiltinModel``; a name registered again is replaced.

    >>> register_builtin("my-cnn", lambda verbose=False: BuiltinModel("my-cnn", net, x, calib, evaluate))  # doctest: +SKIP
    >>> load_builtin("my-cnn").name  # doctest: +SKIP
    'my-cnn'
    """
    MODELS[name] = factory


def load_builtin(name: str, verbose: bool = False) -> BuiltinModel:
    """Build the built-in model registered as ``name`` (see ``MODELS``).
    Raises UserInputError, one line listing the choices, for an unknown name.

    >>> load_builtin("demo-cnn").example_input.shape  # doctest: +SKIP
    torch.Size([1, 1, 32, 32])
    """
    if name not in MODELS:
        raise UserInputError(f"--model: unknown model '{name}'; choose one of {sorted(MODELS)}")
    return MODELS[name](verbose=verbose)
