"""Every measurement, stored once (JSON lines per profile), repeated only when asked (``calibrate --retime``).

A profile's store is the user's cache file (``cache/measurements/P.jsonl``, where new
measurements go) read over the shipped one (``hw_profiles/measurements/P.jsonl.gz``, measured by the
developers and committed): on the host the shipped records name, a fresh clone starts
calibrated; on any other host they are ignored like any other device's measurements.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from automc._paths import SHIPPED_MEASUREMENTS_DIR, cache_dir
from automc._host import host_description
from automc.deploy.lower import LOWERING_VERSION
from automc.latency.measure import Timing
from automc.profiles import HardwareProfile


@dataclass(frozen=True)
class Measurement:
    """One stored measurement: a kernel (or whole-model) key and its timing on a host."""

    key: str
    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    trials: int
    host: str  # the device measured on (see measured_on)
    tvm_version: str
    measured_at: float
    spec: dict | None = None  # a kernel's KernelSpec
    kernels: list[str] | None = None  # a whole model's kernel keys, in order
    lowering: int = 0  # deploy.lower.LOWERING_VERSION of the code that was timed
    threads: int = 0  # CPU threads the code ran on (0: recorded before the count was set)
    passes: int = 1  # separate timings merged into this record (``MeasurementStore.add``)
    # a whole model's architecture: the model key of the uncompressed model it was compressed
    # from (``calibrate.architecture_key``); None for kernels, probes, and wholes stored before
    architecture: str | None = None

    @property
    def latency_ms(self) -> float:
        """What the latency model uses (ms): ``measure.Timing.latency_ms``, the fastest repeat."""
        return self.min_ms


def measured_on(profile: HardwareProfile) -> str:
    """Which device a profile's measurements come from: this host for a local runner, the
    device key behind the tracker for an rpc one (so they are reused from any driving host)."""
    if profile.runner.kind == "rpc":
        return f"rpc device '{profile.runner.device_key}'"
    return host_description()


def shipped_path(profile: HardwareProfile) -> Path:
    """The measurements shipped with automc for ``profile`` (may not exist): gzipped JSON lines,
    as every whole-model record lists its kernels' keys (MobileNetV2's 69 models: 1.0 MB of the
    2.9 MB a full x86-vnni store takes raw; 0.13 MB gzipped)."""
    return SHIPPED_MEASUREMENTS_DIR / f"{profile.name}.jsonl.gz"


class MeasurementStore:
    """Append-only JSONL file of measurements for one profile (``cache/measurements/P.jsonl``),
    over the shipped file of that profile when ``root`` is the default cache.

    ``AUTOMC_SHIPPED_MEASUREMENTS=0`` leaves the shipped file out (the test suite does, so that
    calibration is tested from empty); an explicit ``root`` always does."""

    def __init__(self, profile: HardwareProfile, root: Path | None = None):
        self.path = (root or cache_dir() / "measurements") / f"{profile.name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.device = measured_on(profile)
        self.threads = profile.threads
        self._records: dict[str, Measurement] = {}
        self.shipped_path = shipped_path(profile)
        self.n_shipped = 0
        if root is None and os.environ.get("AUTOMC_SHIPPED_MEASUREMENTS", "1") != "0":
            self.n_shipped = self._load(self.shipped_path)
        self._load(self.path)  # the user's own measurements win over the shipped ones

    def _load(self, path: Path) -> int:
        if not path.exists():
            return 0
        n = 0
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        for line in text.splitlines():
            if line.strip():
                rec = Measurement(**json.loads(line))
                # only this device's measurements of the current lowering, on the profile's
                # thread count, describe the code that would deploy now
                if (rec.host, rec.lowering, rec.threads) == (self.device, LOWERING_VERSION, self.threads):
                    self._records[rec.key] = rec
                    n += 1
        return n

    def write_shipped(self) -> Path:
        """Write every record this store holds now (this device's, current lowering) as its
        profile's shipped file (``shipped_path``), for committing; returns that path."""
        self.shipped_path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r.__dict__) + "\n" for r in self._records.values())
        # mtime 0: the same store gives the same bytes
        self.shipped_path.write_bytes(gzip.compress(text.encode(), mtime=0))
        return self.shipped_path

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> Measurement | None:
        return self._records.get(key)

    def records(self) -> list[Measurement]:
        return list(self._records.values())

    def add(self, key: str, timing: Timing, trials: int, spec: dict | None = None,
            kernels: list[str] | None = None, architecture: str | None = None) -> Measurement:
        """Store ``timing`` of ``key``; a key stored already gets it as one more pass (``calibrate
        --retime``): the fastest repeat of all passes, the mean of their medians (ms).

        Why passes: this shared host runs in phases of minutes (other tenants' vCPUs), and a
        whole MobileNetV2 timed in a slow one took 16% longer (1.93 vs 1.66 ms, the same
        executable ten minutes apart). The fastest repeat over passes minutes apart is what
        any later timing over minutes agrees with."""
        import tvm

        old = self._records.get(key)
        passes = old.passes + 1 if old is not None else 1
        if old is not None:
            timing = Timing((old.median_ms * old.passes + timing.median_ms) / passes, min(old.min_ms, timing.min_ms),
                            max(old.max_ms, timing.max_ms), old.repeats + timing.repeats)
            spec, kernels = spec or old.spec, kernels or old.kernels
            architecture = architecture or old.architecture
        rec = Measurement(key=key, median_ms=timing.median_ms, min_ms=timing.min_ms, max_ms=timing.max_ms,
                          repeats=timing.repeats, trials=trials, host=self.device,
                          tvm_version=tvm.__version__, measured_at=time.time(), spec=spec, kernels=kernels,
                          lowering=LOWERING_VERSION, threads=self.threads,
                          passes=passes, architecture=architecture)
        self._append(rec)
        return rec

    def tag_architecture(self, key: str, architecture: str) -> None:
        """Record that the stored whole model ``key`` was compressed from ``architecture``
        (``calibrate.architecture_key``), its timing unchanged: wholes stored before records
        named their architecture get it when a calibration meets them again."""
        old = self._records[key]
        if old.architecture != architecture:
            self._append(replace(old, architecture=architecture))

    def _append(self, rec: Measurement) -> None:
        with self.path.open("a") as f:  # append-only: the last line of a key wins when loaded
            f.write(json.dumps(rec.__dict__) + "\n")
        self._records[rec.key] = rec
