"""automc: hardware-aware AutoML compression of trained PyTorch models."""

from automc.accuracy import RecoveryBudget, RecoveryReport, recover
from automc.api import SearchResult, default_profile_name, open_run, search
from automc.errors import UserInputError
from automc.profiles import HardwareProfile, list_profiles, load_profile
from automc.types import Candidate, Evaluation, KernelSpec, LayerChoice, LayerInfo

__all__ = [
    "Candidate", "Evaluation", "HardwareProfile", "KernelSpec", "LayerChoice", "LayerInfo", "RecoveryBudget",
    "RecoveryReport", "SearchResult", "UserInputError", "default_profile_name", "list_profiles", "load_profile",
    "open_run", "recover", "search",
]
__version__ = "0.1.0"
