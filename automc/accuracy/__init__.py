"""Accuracy: one proxy protocol (:class:`AccuracyProxy`), one file per proxy, a registry by
name, and recovery (distillation of a compressed model from its original)."""

from automc.accuracy.base import AccuracyProxy, ProxyInputs, checked_accuracy
from automc.accuracy.bn import recalibrate_bn
from automc.accuracy.eval_proxy import EvalProxy
from automc.accuracy.finetune_proxy import FinetuneProxy
from automc.accuracy.recovery import RecoveryBudget, RecoveryReport, recover
from automc.accuracy.registry import DEFAULT_PROXY, PROXIES, check_proxy_name, make_proxy
from automc.accuracy.sensitivity_proxy import SensitivityProxy

__all__ = ["AccuracyProxy", "DEFAULT_PROXY", "EvalProxy", "FinetuneProxy", "PROXIES", "ProxyInputs",
           "RecoveryBudget", "RecoveryReport", "SensitivityProxy", "check_proxy_name", "checked_accuracy",
           "make_proxy", "recalibrate_bn", "recover"]
