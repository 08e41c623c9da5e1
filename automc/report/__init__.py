"""Reports of a search: the Pareto chart, the per-layer and hypervolume figures, the terminal
table of the front, and the files they are written to."""

from automc.report.figures import hypervolume_figure, layers_figure
from automc.report.files import WrittenFigures, write_html, write_png, write_run_figures
from automc.report.plot import is_uncalibrated, pareto_figure
from automc.report.table import front_table, versus_int8

__all__ = ["WrittenFigures", "front_table", "hypervolume_figure", "is_uncalibrated", "layers_figure", "pareto_figure",
           "versus_int8", "write_html", "write_png", "write_run_figures"]
