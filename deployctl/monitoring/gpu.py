"""The GPU exporter's metric names (deployctl exporter serves them; rules and dashboards read them).

Units are Prometheus's base units (watts, °C, hertz, bytes, joules), converted from NVML's at the
adapter (deployctl/hardware/nvml.py). Every series has the labels `gpu` (NVML index) and `uuid`.
"""

from __future__ import annotations

EXPORTER_PORT = 9401  # `deployctl exporter`'s default, beside dcgm-exporter's 9400
PREFIX = "deployctl_gpu_"
INFO = "deployctl_gpu_info"  # 1, with name and driver labels
UP = "deployctl_gpu_up"  # 1 when NVML answered for this GPU at this scrape, 0 when it did not (lost)
POWER = "deployctl_gpu_power_draw_watts"
POWER_LIMIT = "deployctl_gpu_power_limit_watts"  # the enforced limit
POWER_DEFAULT = "deployctl_gpu_power_default_limit_watts"
POWER_MIN = "deployctl_gpu_power_min_limit_watts"
POWER_MAX = "deployctl_gpu_power_max_limit_watts"
TEMPERATURE = "deployctl_gpu_temperature_celsius"
SLOWDOWN = "deployctl_gpu_slowdown_temperature_celsius"  # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
SM_CLOCK = "deployctl_gpu_sm_clock_hertz"
MEM_CLOCK = "deployctl_gpu_memory_clock_hertz"
THROTTLE = "deployctl_gpu_throttle_reason"  # 1 or 0 per `reason` label
MEMORY_USED = "deployctl_gpu_memory_used_bytes"
MEMORY_TOTAL = "deployctl_gpu_memory_total_bytes"
ENERGY = "deployctl_gpu_energy_joules_total"  # NVML's total energy counter (mJ since the driver loaded)
FS_AVAIL = "deployctl_filesystem_avail_bytes"  # per `path` given to the exporter (the model folder)
FS_SIZE = "deployctl_filesystem_size_bytes"

# Throttle (clock event) reasons that mean heat or a hardware brake, not the power cap at work.
HEAT_REASONS = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")
