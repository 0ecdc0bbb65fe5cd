"""The GPUs a plan is made for: this machine's (NVML) or a named profile's."""

from __future__ import annotations

from typing import Any

from deployctl import gpus as profiles
from deployctl.gpus.gpu import Host
from deployctl.hardware import nvml

# Tests put a fake pynvml module here; production leaves it None (the real pynvml).
NVML_LIB: Any = None


def local_host() -> Host:
    """Give this machine's GPUs from NVML."""
    with nvml.session(NVML_LIB) as session:
        return session.host()


def host_for(gpu_model: str | None, count: int, fallback_profile: str | None = None) -> Host:
    """Give the named profile's host, else this machine's; with a fallback, a machine without a driver plans for it."""
    if gpu_model:
        return profiles.host(gpu_model, count)
    try:
        return local_host()
    except nvml.NvmlError as exc:
        if fallback_profile:
            return profiles.host(fallback_profile, count)
        if exc.hint and "--gpu-model" not in exc.hint:
            # Said so that it is true for every command that plans (bundle install has no --gpu-model flag).
            exc.hint += "; to plan for another host: --gpu-model rtx4090 (plan, render, up) or gpu_model: in the spec"
        raise
