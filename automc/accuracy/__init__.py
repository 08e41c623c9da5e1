"""Accuracy: one proxy protocol (:class:`AccuracyProxy`), one file per proxy, and recovery
(distillation of a compressed model from its original)."""

from automc.accuracy.base import AccuracyProxy, ProxyInputs, checked_accuracy
from automc.accuracy.bn import recalibrate_bn
from automc.accuracy.eval_proxy import EvalProxy
from automc.accuracy.recovery import RecoveryBudget, RecoveryReport, recover

__all__ = ["AccuracyProxy", "EvalProxy", "ProxyInputs", "RecoveryBudget", "RecoveryReport", "checked_accuracy",
           "recalibrate_bn", "recover"]
