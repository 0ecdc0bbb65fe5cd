"""The NVML adapter: the only module that touches pynvml (nvidia-ml-py).

NVML's error classes become deployctl errors an operator can act on, and units are
converted here: NVML speaks milliwatts, the rest of deployctl speaks watts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

from deployctl.errors import DeployctlError, EnvironmentProblem
from deployctl.gpus.gpu import Gpu, Host, PowerState, Reading, Sample

T = TypeVar("T")


class NvmlError(DeployctlError):
    """An NVML call failed; the message says what to do."""

    exit_code = 3


class NoPermission(NvmlError):
    pass


class NotSupported(NvmlError):
    pass


class GpuLost(NvmlError):
    pass


def _import_pynvml() -> ModuleType:
    import pynvml

    return pynvml


def _translate(lib: Any, exc: Exception, what: str) -> NvmlError:
    def is_(name: str) -> bool:
        cls = getattr(lib, name, None)
        return isinstance(cls, type) and isinstance(exc, cls)

    if is_("NVMLError_LibraryNotFound") or is_("NVMLError_DriverNotLoaded"):
        return NvmlError(
            "NVIDIA driver not found (libnvidia-ml.so is missing or the kernel module is not loaded)",
            "install the NVIDIA driver and check `nvidia-smi`",
        )
    if is_("NVMLError_NoPermission"):
        return NoPermission(f"{what}: permission denied", "run as root (sudo deployctl ...)")
    if is_("NVMLError_NotSupported"):
        return NotSupported(f"{what}: not supported on this board or driver")
    if is_("NVMLError_GpuIsLost"):
        return GpuLost(
            f"{what}: the GPU has fallen off the bus", "check `dmesg` for Xid errors; the host needs a reboot"
        )
    return NvmlError(f"{what}: NVML error: {exc}")


class Nvml:
    """An open NVML session. Use as a context manager: `with Nvml() as nvml: ...`."""

    def __init__(self, lib: Any | None = None) -> None:
        self._lib_given = lib
        self.lib: Any = None

    def __enter__(self) -> Nvml:
        try:
            self.lib = self._lib_given or _import_pynvml()
        except ImportError:
            raise EnvironmentProblem("nvidia-ml-py is not installed", "pip install nvidia-ml-py") from None
        self._call(self.lib.nvmlInit, what="NVML init")
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.lib.nvmlShutdown()

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        try:
            return fn(*args)
        except Exception as exc:
            if isinstance(exc, getattr(self.lib, "NVMLError", ())):
                raise _translate(self.lib, exc, what) from None
            raise

    def _optional(self, fn: Callable[..., T], *args: Any, what: str) -> T | None:
        """Give fn(*args), or None where the board does not support the query."""
        try:
            return self._call(fn, *args, what=what)
        except NotSupported:
            return None

    def _handle(self, index: int) -> Any:
        return self._call(self.lib.nvmlDeviceGetHandleByIndex, index, what=f"GPU {index}")

    @staticmethod
    def _text(value: str | bytes) -> str:
        return value.decode() if isinstance(value, bytes) else value

    # -- queries ------------------------------------------------------------------------------
    def count(self) -> int:
        return self._call(self.lib.nvmlDeviceGetCount, what="GPU count")

    def driver_version(self) -> str:
        return self._text(self._call(self.lib.nvmlSystemGetDriverVersion, what="driver version"))

    def cuda_driver_version(self) -> str:
        v = self._call(self.lib.nvmlSystemGetCudaDriverVersion, what="CUDA driver version")
        return f"{v // 1000}.{v % 1000 // 10}"

    def power(self, index: int) -> PowerState:
        """Give one GPU's power figures in watts (None where the board does not say)."""
        h = self._handle(index)
        lib = self.lib
        where = f"GPU {index}"
        constraints = self._optional(
            lib.nvmlDeviceGetPowerManagementLimitConstraints, h, what=f"{where} power constraints"
        )
        mw = {
            "draw_w": self._optional(lib.nvmlDeviceGetPowerUsage, h, what=f"{where} power draw"),
            "limit_w": self._optional(lib.nvmlDeviceGetPowerManagementLimit, h, what=f"{where} power limit"),
            "default_limit_w": self._optional(
                lib.nvmlDeviceGetPowerManagementDefaultLimit, h, what=f"{where} default power limit"
            ),
            "enforced_limit_w": self._optional(
                lib.nvmlDeviceGetEnforcedPowerLimit, h, what=f"{where} enforced power limit"
            ),
            "min_limit_w": constraints[0] if constraints else None,
            "max_limit_w": constraints[1] if constraints else None,
        }
        return PowerState(**{k: (v / 1000 if v is not None else None) for k, v in mw.items()})

    def gpu(self, index: int) -> Gpu:
        """Give everything deployctl shows about one GPU."""
        h = self._handle(index)
        lib = self.lib
        where = f"GPU {index}"
        mem = self._call(lib.nvmlDeviceGetMemoryInfo, h, what=f"{where} memory")
        cc = self._optional(lib.nvmlDeviceGetCudaComputeCapability, h, what=f"{where} compute capability")
        pci = self._optional(lib.nvmlDeviceGetPciInfo, h, what=f"{where} PCI info")
        temp = self._optional(lib.nvmlDeviceGetTemperature, h, lib.NVML_TEMPERATURE_GPU, what=f"{where} temperature")
        persist = self._optional(lib.nvmlDeviceGetPersistenceMode, h, what=f"{where} persistence mode")
        return Gpu(
            index=index,
            uuid=self._text(self._call(lib.nvmlDeviceGetUUID, h, what=f"{where} UUID")),
            name=self._text(self._call(lib.nvmlDeviceGetName, h, what=f"{where} name")),
            memory_total=int(mem.total),
            memory_used=int(mem.used),
            pci_bus_id=self._text(pci.busId) if pci is not None else None,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
            temperature_c=temp,
            persistence_mode=bool(persist) if persist is not None else None,
            power=self.power(index),
            source="nvml",
        )

    def energy_mj(self, index: int) -> int:
        """Give the GPU's energy counter: millijoules since the driver was loaded (Volta and newer)."""
        return int(
            self._call(
                self.lib.nvmlDeviceGetTotalEnergyConsumption, self._handle(index), what=f"GPU {index} energy counter"
            )
        )

    def reading(self, index: int) -> Reading:
        """Give one GPU's energy counter, temperature and current clocks (None where the board does not say)."""
        h = self._handle(index)
        lib = self.lib
        where = f"GPU {index}"
        return Reading(
            energy_mj=self.energy_mj(index),
            temperature_c=self._optional(
                lib.nvmlDeviceGetTemperature, h, lib.NVML_TEMPERATURE_GPU, what=f"{where} temperature"
            ),
            sm_clock_mhz=self._optional(lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_SM, what=f"{where} SM clock"),
            mem_clock_mhz=self._optional(
                lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_MEM, what=f"{where} memory clock"
            ),
        )

    def sample(self, index: int) -> Sample:
        """Give one GPU's readings for the exporter: power, heat, clocks, clock event reasons, memory, energy.

        Read-only: nothing here sets anything. A lost GPU raises GpuLost (the exporter reports it down).
        """
        h = self._handle(index)
        lib = self.lib
        where = f"GPU {index}"
        mem = self._call(lib.nvmlDeviceGetMemoryInfo, h, what=f"{where} memory")
        # NVML 12.x renamed the call (clock "event" reasons); older drivers only have the throttle name.
        reasons_fn = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            lib, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        slowdown = getattr(lib, "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", None)
        return Sample(
            index=index,
            uuid=self._text(self._call(lib.nvmlDeviceGetUUID, h, what=f"{where} UUID")),
            name=self._text(self._call(lib.nvmlDeviceGetName, h, what=f"{where} name")),
            power=self.power(index),
            memory_used=int(mem.used),
            memory_total=int(mem.total),
            temperature_c=self._optional(
                lib.nvmlDeviceGetTemperature, h, lib.NVML_TEMPERATURE_GPU, what=f"{where} temperature"
            ),
            slowdown_temperature_c=self._optional(
                lib.nvmlDeviceGetTemperatureThreshold, h, slowdown, what=f"{where} slowdown temperature"
            )
            if slowdown is not None and hasattr(lib, "nvmlDeviceGetTemperatureThreshold")
            else None,
            sm_clock_mhz=self._optional(lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_SM, what=f"{where} SM clock"),
            mem_clock_mhz=self._optional(
                lib.nvmlDeviceGetClockInfo, h, lib.NVML_CLOCK_MEM, what=f"{where} memory clock"
            ),
            throttle_reasons=self._optional(reasons_fn, h, what=f"{where} clock event reasons") if reasons_fn else None,
            energy_mj=self._optional(lib.nvmlDeviceGetTotalEnergyConsumption, h, what=f"{where} energy counter"),
        )

    def p2p_ok(self, a: int, b: int) -> bool:
        """Give whether GPUs a and b can read each other's memory peer-to-peer."""
        lib = self.lib
        status = self._optional(
            lib.nvmlDeviceGetP2PStatus,
            self._handle(a),
            self._handle(b),
            lib.NVML_P2P_CAPS_INDEX_READ,
            what=f"P2P {a}<->{b}",
        )
        return status == lib.NVML_P2P_STATUS_OK

    def gpus(self) -> list[Gpu]:
        return [self.gpu(i) for i in range(self.count())]

    def host(self) -> Host:
        """Give this machine's GPUs, driver and whether every pair has P2P."""
        gpus = self.gpus()
        pairs = [(a.index, b.index) for a in gpus for b in gpus if a.index < b.index]
        p2p = bool(pairs) and all(self.p2p_ok(a, b) for a, b in pairs)
        return Host(
            gpus=gpus,
            p2p=p2p,
            driver_version=self.driver_version(),
            cuda_driver_version=self.cuda_driver_version(),
            max_gpus=len(gpus),
        )

    def index_of(self, uuid: str) -> int:
        """Give the NVML index of the GPU with this UUID (indices can change across reboots)."""
        for i in range(self.count()):
            if self._text(self._call(self.lib.nvmlDeviceGetUUID, self._handle(i), what=f"GPU {i} UUID")) == uuid:
                return i
        raise NvmlError(f"no GPU with UUID {uuid} on this host", "run `deployctl gpus` to list them")

    # -- setters (root) -------------------------------------------------------------------------
    def set_power_limit(self, index: int, watts: float) -> None:
        """Ask NVML for a new limit; the caller must read the enforced limit back (see power.py)."""
        # The v1 setter: nvmlDeviceSetPowerManagementLimit_v2 in nvidia-ml-py drops NVML's return code.
        self._call(
            self.lib.nvmlDeviceSetPowerManagementLimit,
            self._handle(index),
            round(watts * 1000),
            what=f"GPU {index}: set power limit",
        )


@contextlib.contextmanager
def session(lib: Any | None = None) -> Iterator[Nvml]:
    """Give an open NVML session (pynvml by default, a fake in tests)."""
    with Nvml(lib) as nvml:
        yield nvml
