"""Hardware profiles (hw_profiles/*.yaml): the target, how to reach it, what it can run.

Pure data: whether a profile can be measured now is its device runner's to say
(``automc.devices.device_runner``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automc._paths import PROFILES_DIR
from automc._yaml import load_yaml_model, resolve_named_file
from automc.errors import UserInputError

KERNEL_DTYPES = ("float32", "float16", "int8")


class RunnerConfig(BaseModel):
    """Where kernels are measured: on this host, or on a device through a TVM RPC tracker."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["local", "rpc"] = "local"
    tracker_host: str = "127.0.0.1"
    tracker_port: int = 9190
    device_key: str = ""
    # seconds one RPC session may last (one tuning trial, or one kernel's or model's timing with
    # its upload); the server ends longer sessions
    session_timeout_s: int = Field(120, gt=0)


class TuningConfig(BaseModel):
    """MetaSchedule budget: trials for a kernel tuned from scratch (0 = default schedules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    trials_per_kernel: int = Field(16, ge=0)
    repeat: int = Field(5, ge=3)
    min_repeat_ms: float = Field(100.0, ge=0)
    # each fused task of a whole model is timed on its own for at least this long per repeat (ms)
    task_min_repeat_ms: float = Field(10.0, ge=0)
    # replay the tuned trace of the nearest same-structure task instead of tuning each shape
    transfer_traces: bool = True


class HardwareProfile(BaseModel):
    """A deployment target. ``kernel_dtype`` maps a bit-width to the dtype its kernel runs in:
    a bit-width missing from it cannot be run on this target."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    description: str = ""
    target: dict[str, object]
    host: dict[str, object] | None = None
    runner: RunnerConfig = RunnerConfig()
    kernel_dtype: dict[int, str]
    peak_gops: dict[str, float]  # dense-math peak per kernel dtype, 1e9 ops/s (1 MAC = 2 ops)
    mem_bandwidth_gbs: float = Field(gt=0)  # 1e9 bytes/s
    cross_compiler: str | None = None  # e.g. aarch64-linux-gnu-gcc for export_library
    requires_cpu_flags: list[str] = Field(default_factory=list)  # /proc/cpuinfo flags to run locally
    tuning: TuningConfig = TuningConfig()

    @field_validator("kernel_dtype")
    @classmethod
    def _dtypes_known(cls, v: dict[int, str]) -> dict[int, str]:
        for bits, dtype in v.items():
            if dtype not in KERNEL_DTYPES:
                raise ValueError(f"bit-width {bits} maps to unknown kernel dtype '{dtype}'; use one of {KERNEL_DTYPES}")
            if not 1 <= bits <= 32:
                raise ValueError(f"bit-width {bits} is outside 1..32")
        if 32 not in v:
            raise ValueError("must map 32 (float) to a kernel dtype")
        return v

    @field_validator("target")
    @classmethod
    def _target_has_kind(cls, v: dict[str, object]) -> dict[str, object]:
        if "kind" not in v:
            raise ValueError("needs a 'kind' (llvm, cuda, ...), as a TVM target dict")
        return v

    @property
    def target_kind(self) -> str:
        return str(self.target["kind"])

    @property
    def threads(self) -> int:
        """CPU threads the deployed code runs on: the target's ``num-cores`` (1 when absent)."""
        return int(self.target.get("num-cores", 1))

    def check_bits(self, bits: int, where: str) -> None:
        """Raise a UserInputError if this profile has no kernel for ``bits``."""
        if bits not in self.kernel_dtype:
            raise UserInputError(
                f"{where}: bit-width {bits} cannot run on profile '{self.name}' "
                f"(it runs {sorted(self.kernel_dtype)}); remove it or add it to the profile's kernel_dtype")


def load_profile(name_or_path: str) -> HardwareProfile:
    """A shipped profile by name (``x86-vnni``) or a path to a profile YAML file."""
    path = resolve_named_file(name_or_path, PROFILES_DIR, "profile", "--profile")
    profile = load_yaml_model(path, HardwareProfile, "hardware profile")
    return profile


def list_profiles() -> list[HardwareProfile]:
    """All shipped profiles, by name."""
    return [load_profile(str(p)) for p in sorted(PROFILES_DIR.glob("*.yaml"))]
