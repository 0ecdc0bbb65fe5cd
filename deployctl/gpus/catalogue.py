"""GPU profiles: plan for a host whose GPUs are not in this machine (`--gpu-model rtx4090`)."""

from __future__ import annotations

from dataclasses import dataclass

from deployctl.errors import InputError
from deployctl.hardware.gpu import GiB, Gpu, Host, PowerState


@dataclass(frozen=True)
class GpuProfile:
    name: str
    marketing_name: str
    memory_bytes: int
    bandwidth_gbs: float
    compute_capability: str
    p2p: bool
    max_gpus: int  # the largest host of this kind deployctl plans for
    power: PowerState


PROFILES: dict[str, GpuProfile] = {
    "rtx4090": GpuProfile(
        name="rtx4090",
        marketing_name="NVIDIA GeForce RTX 4090",
        memory_bytes=24 * GiB,
        bandwidth_gbs=1008.0,
        compute_capability="8.9",
        p2p=False,  # no NVLink; P2P over PCIe is off on most drivers
        max_gpus=2,
        power=PowerState(limit_w=450, default_limit_w=450, enforced_limit_w=450, min_limit_w=150, max_limit_w=600),
    ),
}


def profile(name: str) -> GpuProfile:
    """Give the named profile, or an InputError listing the known ones."""
    key = name.lower().replace(" ", "").replace("-", "").replace("geforce", "").replace("nvidia", "")
    if key not in PROFILES:
        raise InputError(f"gpu_model {name!r} is unknown", f"known: {', '.join(sorted(PROFILES))}")
    return PROFILES[key]


def for_name(gpu_name: str) -> GpuProfile | None:
    """Give the profile whose marketing name matches an NVML device name, if any."""
    return next((p for p in PROFILES.values() if p.marketing_name.lower() in gpu_name.lower()), None)


def host(name: str, count: int) -> Host:
    """Give a host of `count` GPUs of the named profile."""
    p = profile(name)
    gpus = [
        Gpu(
            index=i,
            uuid=f"profile-{p.name}-{i}",
            name=p.marketing_name,
            memory_total=p.memory_bytes,
            compute_capability=p.compute_capability,
            power=p.power,
            source="profile",
        )
        for i in range(max(count, 1))
    ]
    return Host(gpus=gpus, p2p=p.p2p, profile=p.name, max_gpus=p.max_gpus)
