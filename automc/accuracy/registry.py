"""Accuracy proxies by name (as timm builds models): ``make_proxy("finetune", inputs)``."""

from __future__ import annotations

from typing import Callable

from automc.accuracy.base import AccuracyProxy, ProxyInputs
from automc.accuracy.eval_proxy import EvalProxy
from automc.accuracy.finetune_proxy import FinetuneProxy
from automc.accuracy.sensitivity_proxy import SensitivityProxy
from automc.errors import UserInputError

DEFAULT_PROXY = "eval"

PROXIES: dict[str, Callable[[ProxyInputs], AccuracyProxy]] = {
    "eval": lambda i: EvalProxy(i.evaluate, i.calib_batches),
    "finetune": FinetuneProxy,
    "sensitivity": SensitivityProxy,
}


def check_proxy_name(name: str, option: str = "--proxy") -> str:
    """``name`` when a proxy is registered under it; else the one-line error users see, naming ``option``."""
    if name not in PROXIES:
        raise UserInputError(f"{option}: unknown accuracy proxy '{name}'; choose one of {sorted(PROXIES)}")
    return name


def make_proxy(name: str, inputs: ProxyInputs) -> AccuracyProxy:
    """The proxy registered as ``name`` (see ``PROXIES``), built from ``inputs``.

    >>> proxy = make_proxy("sensitivity", ProxyInputs(model, x, evaluate, calib))  # doctest: +SKIP
    >>> proxy(apply_candidate(model, candidate, x, calib), candidate)  # doctest: +SKIP
    0.9425
    """
    return PROXIES[check_proxy_name(name)](inputs)
