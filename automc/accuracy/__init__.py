"""Accuracy proxies: one protocol (:class:`AccuracyProxy`), one file per implementation."""

from automc.accuracy.base import AccuracyProxy
from automc.accuracy.bn import recalibrate_bn
from automc.accuracy.eval_proxy import EvalProxy

__all__ = ["AccuracyProxy", "EvalProxy", "recalibrate_bn"]
