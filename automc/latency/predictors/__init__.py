"""Latency predictors, one protocol (``LatencyPredictor``): kernels in, milliseconds out.

``CalibratedPredictor`` (store hits, else the work model; graph ops and overheads priced from
whole models) and ``RooflinePredictor`` (the labelled fallback for profiles not calibrated on
this host), one module each, with the fits they are made of (``work_model``, ``graph_pricing``).
"""

from automc.latency.predictors.base import LatencyPredictor
from automc.latency.predictors.calibrated import CalibratedPredictor
from automc.latency.predictors.graph_pricing import MIN_OWN_WHOLES, GraphPricing, fit_graph_pricing, kernel_records
from automc.latency.predictors.roofline import RooflinePredictor
from automc.latency.predictors.work_model import WorkModel, fit_work_model, kernel_family, work_terms

__all__ = ["MIN_OWN_WHOLES", "CalibratedPredictor", "GraphPricing", "LatencyPredictor", "RooflinePredictor",
           "WorkModel", "fit_graph_pricing", "fit_work_model", "kernel_family", "kernel_records", "work_terms"]
