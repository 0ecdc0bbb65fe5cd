"""Plain data about GPUs, shared by the NVML adapter, the profiles and the planner, and the memory CUDA sees."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

GiB = 1024**3
MiB = 1024**2

# Others' use of a GPU below this is the display server or the driver, not a workload
# (NVML counts the driver's reserve as used: 480 MiB on an idle H100, docs/hardware-readings.md).
IDLE_USE = 512 * MiB


class PowerState(BaseModel):
    """Power figures of one GPU, in watts."""

    model_config = ConfigDict(frozen=True)

    draw_w: float | None = None
    limit_w: float | None = None
    default_limit_w: float | None = None
    enforced_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None


class Reading(BaseModel):
    """What one GPU's counters say at one moment: energy (mJ since the driver loaded), temperature, clocks."""

    model_config = ConfigDict(frozen=True)

    energy_mj: int
    temperature_c: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None


class Gpu(BaseModel):
    """One GPU as the planner and the operator see it."""

    model_config = ConfigDict(frozen=True)

    index: int
    uuid: str
    name: str
    memory_total: int
    memory_used: int = 0
    pci_bus_id: str | None = None
    compute_capability: str | None = None
    temperature_c: int | None = None
    persistence_mode: bool | None = None
    power: PowerState = PowerState()
    source: Literal["nvml", "profile"] = "nvml"


class Host(BaseModel):
    """The GPUs a plan is made for, and how they talk to each other."""

    model_config = ConfigDict(frozen=True)

    gpus: list[Gpu]
    p2p: bool = False
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    profile: str | None = None
    max_gpus: int


def used_by_others(g: Gpu) -> int:
    """Give what other processes hold on a GPU (less is the driver's own reserve)."""
    return g.memory_used if g.memory_used > IDLE_USE else 0


def cuda_total(g: Gpu) -> int:
    """Give the GPU's total as CUDA reports it."""
    # NVML's total includes what the driver keeps (it shows as used on an idle GPU); CUDA's does not.
    return g.memory_total if g.source == "profile" else g.memory_total - min(g.memory_used, IDLE_USE)


# NVML's clock event reasons (nvml.h `nvmlClocksEventReason*`, formerly `nvmlClocksThrottleReason*`: the
# same bits), by the name the GPU exporter gives them.
THROTTLE_REASONS: dict[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clock_setting": 0x100,
}


class Sample(BaseModel):
    """Everything the GPU exporter serves about one GPU at one moment (None where the board does not say)."""

    model_config = ConfigDict(frozen=True)

    index: int
    uuid: str
    name: str
    power: PowerState
    memory_used: int
    memory_total: int
    temperature_c: float | None = None
    slowdown_temperature_c: float | None = None  # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    throttle_reasons: int | None = None  # NVML's bit mask (THROTTLE_REASONS)
    energy_mj: int | None = None  # None before Volta
