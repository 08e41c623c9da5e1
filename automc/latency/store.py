"""Every measurement, stored once (JSON lines per profile), repeated only when asked (``calibrate --retime``).

A profile's store is the user's cache file (``cache/measurements/P.jsonl``, where new
measurements go) read over the shipped one (``hw_profiles/measurements/P.jsonl.gz``, measured by the
developers and committed): on the host the shipped records name, a fresh clone starts
calibrated; on any other host they are ignored like any other device's measurements. The host's
name does not tell two VMs of one kind apart, so shipped records count only until a check that
times some of them again (``latency.shipped.check_shipped``) finds this host runs them at another
speed; its verdict is kept beside the cache file (``ShippedCheck``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from automc._paths import SHIPPED_MEASUREMENTS_DIR, cache_dir
from automc.deploy.lower import lowering_version
from automc.deploy.x86 import AVX512_VNNI, kernel_isa
from automc.devices import Timing, device_runner
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
    lowering: int = 0  # deploy.lower.lowering_version of the code that was timed
    threads: int = 0  # CPU threads the code ran on (0: recorded before the count was set)
    passes: int = 1  # separate timings merged into this record (``MeasurementStore.add``)
    # a whole model's architecture: the ``calibrate.model_key`` of the uncompressed model it was
    # compressed from; None for kernels, probes, and wholes stored before
    architecture: str | None = None

    @property
    def latency_ms(self) -> float:
        """What the latency model uses (ms): ``measure.Timing.latency_ms``, the fastest repeat."""
        return self.min_ms


def measured_on(profile: HardwareProfile) -> str:
    """Which device a profile's measurements come from: this host for a local runner, the
    device key behind the tracker for an rpc one (so they are reused from any driving host)."""
    return device_runner(profile).measured_on


def read_records(path: Path, device: str, threads: int, lowering: int) -> list[Measurement]:
    """The records of a store file (JSON lines, gzipped when it ends in .gz; none when it does
    not exist) that describe the code that would deploy now: measured on ``device``, with the
    current lowering (``lowering``: ``deploy.lower.lowering_version``), on ``threads`` threads.
    A key's last line wins."""
    if not path.exists():
        return []
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    recs = (r for r in map(_parse_line, text.splitlines()) if r is not None)
    return [r for r in recs if (r.host, r.lowering, r.threads) == (device, lowering, threads)]


def _parse_line(line: str) -> Measurement | None:
    """A stored line's record; None for a blank line or one torn by a writer killed mid-line
    (``kill -9`` during a calibration): everything stored before it still counts."""
    if not line.strip():
        return None
    try:
        return Measurement(**json.loads(line))
    except (json.JSONDecodeError, TypeError):
        return None


def shipped_path(profile: HardwareProfile) -> Path:
    """The measurements shipped with automc for ``profile`` (may not exist): gzipped JSON lines,
    as every whole-model record lists its kernels' keys (MobileNetV2's 69 models: 1.0 MB of the
    2.9 MB a full x86-vnni store takes raw; 0.13 MB gzipped)."""
    return SHIPPED_MEASUREMENTS_DIR / f"{profile.name}.jsonl.gz"


@dataclass(frozen=True)
class ShippedCheck:
    """A profile's shipped measurements timed again on this host: the ``digest`` of the shipped
    file checked, the median ``ratio`` now / shipped of its reference models' whole times (None
    when none of them was shipped), how many ``references`` were timed, whether the records
    count here (``accepted``), and when (s since the epoch)."""

    digest: str
    ratio: float | None
    references: int
    accepted: bool
    checked_at: float


def shipped_digest(profile: HardwareProfile) -> str | None:
    """SHA-1 of the profile's shipped file (None when nothing ships): a verdict holds for one file."""
    path = shipped_path(profile)
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.exists() else None


def _check_path(profile: HardwareProfile) -> Path:
    return cache_dir() / "measurements" / f"{profile.name}.shipped-check.json"


def read_shipped_check(profile: HardwareProfile) -> ShippedCheck | None:
    """The verdict on the profile's current shipped file, None when it was never checked here."""
    path = _check_path(profile)
    if not path.exists():
        return None
    check = ShippedCheck(**json.loads(path.read_text()))
    return check if check.digest == shipped_digest(profile) else None


def write_shipped_check(profile: HardwareProfile, check: ShippedCheck) -> None:
    """Keep ``check`` beside the cache file: later stores of the profile follow it."""
    path = _check_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(check.__dict__))


def shipped_enabled() -> bool:
    """``AUTOMC_SHIPPED_MEASUREMENTS=0`` leaves shipped files out (the test suite does)."""
    return os.environ.get("AUTOMC_SHIPPED_MEASUREMENTS", "1") != "0"


class MeasurementStore:
    """Append-only JSONL file of measurements for one profile (``cache/measurements/P.jsonl``),
    over the shipped file of that profile when ``root`` is the default cache.

    ``AUTOMC_SHIPPED_MEASUREMENTS=0`` leaves the shipped file out (the test suite does, so that
    calibration is tested from empty); an explicit ``root`` always does, and so does a check
    that rejected it on this host (``read_shipped_check``)."""

    def __init__(self, profile: HardwareProfile, root: Path | None = None):
        self.path = (root or cache_dir() / "measurements") / f"{profile.name}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.device = measured_on(profile)
        self.threads = profile.threads
        self.lowering = lowering_version(profile)
        # the packed kernels' instruction set (their register tiles: the work model's terms);
        # where none runs, the AVX-512 tiles as before
        self.isa = kernel_isa(profile.target) or AVX512_VNNI
        self._records: dict[str, Measurement] = {}
        self.shipped_path = shipped_path(profile)
        self.n_shipped = 0
        self.shipped_check = read_shipped_check(profile) if root is None and shipped_enabled() else None
        if root is None and shipped_enabled() and (self.shipped_check is None or self.shipped_check.accepted):
            self.n_shipped = self._load(self.shipped_path)
        self._load(self.path)  # the user's own measurements win over the shipped ones

    def _load(self, path: Path) -> int:
        recs = read_records(path, self.device, self.threads, self.lowering)
        self._records.update((r.key, r) for r in recs)
        return len(recs)

    def write_shipped(self) -> Path:
        """Write every record this store holds now (this device's, current lowering) into its
        profile's shipped file (``shipped_path``), for committing; returns that path. The file's
        records of other devices stay: one file serves every host a developer calibrated on
        (each reads its own, ``read_records``); this device's earlier ones are replaced."""
        self.shipped_path.parent.mkdir(parents=True, exist_ok=True)
        others = []
        if self.shipped_path.exists():
            lines = gzip.decompress(self.shipped_path.read_bytes()).decode().splitlines()
            others = [line + "\n" for line in lines if line.strip() and json.loads(line)["host"] != self.device]
        text = "".join(others) + "".join(json.dumps(r.__dict__) + "\n" for r in self._records.values())
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
                          lowering=self.lowering, threads=self.threads,
                          passes=passes, architecture=architecture)
        self._append(rec)
        return rec

    def tag_architecture(self, key: str, architecture: str) -> None:
        """Record that the stored whole model ``key`` was compressed from ``architecture`` (the
        uncompressed model's ``calibrate.model_key``), its timing unchanged: wholes stored before
        records named their architecture get it when a calibration meets them again."""
        old = self._records[key]
        if old.architecture != architecture:
            self._append(replace(old, architecture=architecture))

    def _append(self, rec: Measurement) -> None:
        line = json.dumps(rec.__dict__) + "\n"
        with self.path.open("a+b") as f:  # append-only: the last line of a key wins when loaded
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line torn by a killed writer: start on a line of our own
                    line = "\n" + line
            f.write(line.encode())
        self._records[rec.key] = rec
