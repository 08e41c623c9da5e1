"""Do the measurements shipped for a profile hold on this host? Some of them, timed again.

Shipped records name their host by CPU model and core count (``_host.host_description``),
which does not tell two VMs of one kind apart: a new VM of the name a shipped store carries can
run its records a fifth slower (see experiments/HISTORY.md), and every prediction from them
would be that much fast, yet labelled calibrated. Before the
shipped records count, the first ``REFERENCE_PROBES`` probe networks (``latency.probes``:
seeded, untrained, measured by every calibration that ships) are compiled and timed whole as
calibration times them; the records count when the median ratio now / shipped is within
``TOLERANCE``, each reference's time now being its fastest within ``WINDOW_S``. The verdict is
kept per shipped file (``store.ShippedCheck``), so this costs the references' compilation and
a few timings once when the records hold, and ``WINDOW_S`` more when they do not.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from automc.deploy.build import open_database
from automc.deploy.compile import compile_candidate
from automc.deploy.lower import lowering_version
from automc.devices import device_runner
from automc.latency.calibrate import model_key
from automc.latency.measure import time_executable
from automc.latency.probes import probe_networks
from automc.latency.store import (Measurement, ShippedCheck, measured_on, read_records, read_shipped_check, shipped_digest,
                                  shipped_enabled, shipped_path, write_shipped_check)
from automc.profiles import HardwareProfile

REFERENCE_PROBES = 4
# the validation's bar: records this far off cannot predict within ±10%
TOLERANCE = 0.10
# These hosts only ever add time, in phases of seconds to minutes (experiments/host_phases.py),
# so a few passes in a row can all be slow. So each reference's time is the fastest of timings PAUSE_S
# apart, as calibration keeps the fastest of its passes, and the check times until the median
# ratio is within TOLERANCE (accepted) or below it (a host faster than its records: more
# timings only lower it), or for WINDOW_S at most (rejected). A VM really slower stays off the
# whole window.
WINDOW_S = 90.0
PAUSE_S = 3.0


def check_shipped(profile: HardwareProfile, again: bool = False) -> ShippedCheck | None:
    """Time the shipped reference models of ``profile`` again here, unless this shipped file was
    checked already (``again``: check anyway), and keep the verdict. None when nothing is to
    check: no shipped file, shipped files switched off, none of its records for this host, or a
    profile this host does not run (an rpc profile's records are its device's, checked there by
    calibrating).

    >>> check = check_shipped(load_profile("x86-vnni"))  # doctest: +SKIP
    >>> check.accepted, round(check.ratio, 2)  # doctest: +SKIP
    (True, 1.02)
    """
    if not shipped_enabled() or not device_runner(profile).measurable_here:
        return None
    digest = shipped_digest(profile)
    shipped = {r.key: r for r in read_records(shipped_path(profile), measured_on(profile), profile.threads,
                                              lowering_version(profile))}
    if digest is None or not shipped:
        return None
    done = read_shipped_check(profile)
    if done is not None and not again:
        return done
    references = [(executable, x, shipped[key]) for key, executable, x in reference_executables(profile)
                  if key in shipped]  # a key not shipped: shipped by an older probe sampler
    ratio, accepted = _fastest_ratio(references, profile) if references else (None, False)
    check = ShippedCheck(digest, ratio, len(references), accepted, time.time())
    write_shipped_check(profile, check)
    return check


def reference_executables(profile: HardwareProfile) -> list[tuple[str, object, np.ndarray]]:
    """The check's reference probes compressed, tuned (from the profile's database) and compiled
    for ``profile``: (the model key calibration stores them under, executable, input array)."""
    database = open_database(profile)
    out = []
    for probe in probe_networks(REFERENCE_PROBES):
        x = probe.example_input
        compiled = compile_candidate(probe.model, probe.candidate, x, profile, (x,), database)
        out.append((model_key(compiled.kernels, x), compiled.executable, x.numpy()))
    return out


def _fastest_ratio(references: list[tuple[object, np.ndarray, Measurement]],
                   profile: HardwareProfile) -> tuple[float, bool]:
    """Time each (executable, input, shipped record) of ``references`` once a pass, PAUSE_S
    apart, until the median over them of (fastest time here ÷ shipped ``latency_ms``) is judged
    (see WINDOW_S). Returns (that ratio, accepted)."""
    fastest = [math.inf] * len(references)
    end = time.monotonic() + WINDOW_S
    while True:
        for i, (executable, x, _) in enumerate(references):
            fastest[i] = min(fastest[i], time_executable(executable, [x], profile).latency_ms)
        ratio = statistics.median(t / rec.latency_ms for t, (_, _, rec) in zip(fastest, references))
        if abs(math.log(ratio)) <= math.log1p(TOLERANCE):
            return ratio, True
        if ratio < 1 or time.monotonic() >= end:
            return ratio, False
        time.sleep(PAUSE_S)


def describe(check: ShippedCheck | None) -> str:
    """One line for users: what the check found and what follows."""
    if check is None:
        return "shipped measurements: none for this host"
    if check.ratio is None:
        return ("shipped measurements IGNORED: none of their reference probes could be timed again here "
                "(shipped by an older automc); run `automc calibrate`")
    speed = f"this host runs them ×{check.ratio:.2f} their shipped time ({check.references} reference models)"
    if check.accepted:
        return f"shipped measurements used: {speed}"
    return (f"shipped measurements IGNORED: {speed}, beyond ±{TOLERANCE:.0%}; this host is calibrated "
            "from its own measurements (`automc calibrate`)")
