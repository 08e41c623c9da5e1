"""Compression operators: cells, structured pruning, low-rank and quantization, applied for real.

``apply_candidate`` is the entry point; the operator modules (``cells``, ``prune``, ``lowrank``,
``quantize``) each do one job on a model in place and are usable on their own.
"""

from automc.compress.apply import apply_candidate
from automc.compress.cells import find_cells
from automc.compress.quantize import QuantizedLayer

__all__ = ["apply_candidate", "find_cells", "QuantizedLayer"]
