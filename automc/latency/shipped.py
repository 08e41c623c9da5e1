"""Do the measurements shipped for a profile hold on this host? Some of them, timed again.

Shipped records name their host by CPU model and core count (``_host.host_description``),
which does not tell two VMs of one kind apart. Measured on 2026-12-06: a new VM of the name the
shipped x86-vnni store carries ran its records 17-23% slower (the demo's fp32 model 0.149 ms
against 0.121 stored, MobileNetV2 3.17 ms against 2.72, kernels ×1.17-1.23 at the median), so
every prediction from them would have been that much fast, and labelled calibrated. Before the
shipped records count, the first ``REFERENCE_PROBES`` probe networks (``latency.probes``:
seeded, untrained, measured by every calibration that ships) are compiled and timed whole as
calibration times them; the records count when the median ratio now / shipped is within
``TOLERANCE`` in one of up to ``PASSES`` passes. The verdict is kept per shipped file (``store.ShippedCheck``), so this costs
about half a minute once.
"""

from __future__ import annotations

import math
import statistics
import time

from automc.compress import apply_candidate
from automc.deploy.build import compile_module, open_database, tune
from automc.deploy.lower import kernel_specs
from automc.deploy.relax_lowering import lower_to_relax
from automc.latency.calibrate import model_key
from automc.latency.measure import median_timing, time_executable
from automc.latency.probes import probe_networks
from automc.latency.store import (ShippedCheck, measured_on, read_records, read_shipped_check, shipped_digest,
                                  shipped_enabled, shipped_path, write_shipped_check)
from automc.profiles import HardwareProfile

REFERENCE_PROBES = 4
# the validation's bar: records this far off cannot predict within ±10%
TOLERANCE = 0.10
# A check outside TOLERANCE times the probes again, up to PASSES in all, PAUSE_S apart, and
# the records count if one pass comes within it: this host has slow phases (a CI run once timed
# the reference probes ×1.72 of their calibration seconds before), and one would otherwise
# throw away good records for an hour of calibration. A VM really faster or slower is off in
# every pass and still rejected.
PASSES = 3
PAUSE_S = 10.0


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
    if not shipped_enabled() or profile.runner.kind != "local" or not profile.measurable_here:
        return None
    digest = shipped_digest(profile)
    shipped = {r.key: r for r in read_records(shipped_path(profile), measured_on(profile), profile.threads)}
    if digest is None or not shipped:
        return None
    done = read_shipped_check(profile)
    if done is not None and not again:
        return done
    database = open_database(profile)
    references = []  # (executable, input, shipped record)
    for probe in probe_networks(REFERENCE_PROBES):
        x = probe.example_input
        compressed = apply_candidate(probe.model, probe.candidate, x, (x,)).eval()
        rec = shipped.get(model_key(kernel_specs(compressed, x, profile), x))
        if rec is None:  # shipped by an older probe sampler
            continue
        mod = lower_to_relax(compressed, x, profile)
        tune(mod, profile, database=database)
        references.append((compile_module(mod, profile, database), x.numpy(), rec))
    ratio, accepted, pass_ratios = None, False, []
    for attempt in range(PASSES if references else 0):
        if attempt:
            time.sleep(PAUSE_S)
        # three spaced timings of each, the fastest repeat of them, as calibration stores a whole
        pass_ratios.append(statistics.median(
            median_timing([time_executable(executable, [x], profile) for _ in range(3)]).latency_ms / rec.latency_ms
            for executable, x, rec in references))
        accepted = abs(math.log(pass_ratios[-1])) <= math.log1p(TOLERANCE)
        if accepted:
            break
    if pass_ratios:
        ratio = pass_ratios[-1] if accepted else statistics.median(pass_ratios)
    check = ShippedCheck(digest, ratio, len(references), accepted, time.time())
    write_shipped_check(profile, check)
    return check


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
