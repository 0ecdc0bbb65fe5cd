"""GPU facts and the catalogue of profiles (plan for GPUs that are not in this machine)."""

from deployctl.gpus.catalogue import PROFILES, GpuProfile, for_name, host, profile

__all__ = ["PROFILES", "GpuProfile", "for_name", "host", "profile"]
