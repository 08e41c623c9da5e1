"""Which shipped x86 profile this host gets: decided by its CPU flags, so the same suite holds on
an AVX2-only Zen 3, a Zen 4 and a Sapphire Rapids (CI runs on whichever one a change came from)."""

from __future__ import annotations

from automc._host import host_cpu_flags
from automc.api import default_profile_name
from automc.devices import device_runner
from automc.profiles import load_profile


def test_default_profile_follows_this_hosts_cpu_flags():
    vnni = load_profile("x86-vnni")
    has_vnni = set(vnni.requires_cpu_flags) <= host_cpu_flags()
    assert default_profile_name() == ("x86-vnni" if has_vnni else "x86-avx2")
    assert device_runner(vnni).measurable_here == has_vnni
    # every host this project lands on has AVX2 + FMA: the fallback is always measurable
    assert device_runner(load_profile("x86-avx2")).measurable_here == ({"avx2", "fma"} <= host_cpu_flags())
