"""Search: spaces, the driver that explores them, and the Pareto front it finds."""

from automc.search.pareto import (
    ReferencePoint, hypervolume, load_study, pareto_frame, reference_point, summarize, trials_frame,
)
from automc.search.results import write_results
from automc.search.driver import SearchSettings, run_search, suggest_params
from automc.search.space import ResolvedSpace, candidate_from_params

__all__ = [
    "ReferencePoint", "ResolvedSpace", "SearchSettings", "candidate_from_params", "hypervolume",
    "load_study", "pareto_frame", "reference_point", "run_search", "suggest_params", "summarize",
    "trials_frame", "write_results",
]
