"""Reports of a search: the interactive Pareto chart and the terminal table of the front."""

from automc.report.plot import is_uncalibrated, pareto_figure, write_pareto_html
from automc.report.table import front_table, versus_int8

__all__ = ["front_table", "is_uncalibrated", "pareto_figure", "versus_int8", "write_pareto_html"]
