"""A fake pynvml module that behaves like RTX 4090 boards (and their failure modes).

It has pynvml's names, units (milliwatts, bytes) and error classes, so the real adapter
(deployctl/hardware/nvml.py) runs unchanged against it. No test touches real hardware.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from deployctl.http import request

GiB = 1024**3


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


class NVMLError_InvalidArgument(NVMLError):
    pass


@dataclass
class Board:
    """One RTX 4090 as NVML sees it (milliwatts, bytes)."""

    index: int
    uuid: str
    name: str = "NVIDIA GeForce RTX 4090"
    memory_total: int = 24564 * 1024**2  # what NVML reports for a 24 GiB 4090
    memory_used: int = 420 * 1024**2
    pci_bus_id: str = "00000000:01:00.0"
    min_mw: int = 150_000
    max_mw: int = 600_000
    default_mw: int = 450_000
    limit_mw: int = 450_000
    draw_mw: int = 31_250
    temperature: int = 41
    persistence: int = 0
    energy_mj: int = 0  # NVML's total energy counter
    energy_counter: bool = True  # False: NotSupported, as on boards older than Volta
    sm_clock_mhz: int = 210  # idle clocks as nvidia-smi shows them on an idle 4090
    mem_clock_mhz: int = 405
    # NVML_TEMPERATURE_THRESHOLD_SLOWDOWN; None: NotSupported, as on boards that do not report it.
    slowdown_temperature: int | None = 87
    clock_event_reasons: int = 0x1  # nvmlClocksEventReasonGpuIdle: what an idle board reports
    settable: bool = True  # False: NotSupported on set
    silent_setter: bool = False  # True: set reports success and changes nothing
    lost: bool = False
    sets: list[int] = field(default_factory=list)
    on_set: Callable[[int], None] | None = None  # called with the milliwatts before a set takes (tests raise here)


class FakeNvml:
    """A stand-in for the pynvml module."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1  # pynvml's values
    NVML_CLOCK_SM = 1  # pynvml's values
    NVML_CLOCK_MEM = 2
    NVML_FEATURE_DISABLED = 0
    NVML_FEATURE_ENABLED = 1
    NVML_P2P_CAPS_INDEX_READ = 0
    NVML_P2P_STATUS_OK = 0
    NVML_P2P_STATUS_NOT_SUPPORTED = 5

    def __init__(
        self,
        boards: list[Board],
        root: bool = True,
        driver: bool = True,
        p2p: bool = False,
        physics: Physics | None = None,
    ) -> None:
        self.boards = boards
        self.root = root
        self.driver = driver
        self.p2p = p2p
        self.physics = physics
        self.initialised = 0

    def _sensed(self, b: Board) -> Board:
        b = self._alive(b)
        if self.physics:
            self.physics.sense(b)
        return b

    # -- session ----------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if not self.driver:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.127.05"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.boards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Board:
        if not 0 <= index < len(self.boards):
            raise NVMLError_InvalidArgument("Invalid Argument")
        return self.boards[index]

    # -- queries -------------------------------------------------------------------------------
    @staticmethod
    def _alive(b: Board) -> Board:
        if b.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        return b

    def nvmlDeviceGetUUID(self, b: Board) -> str:
        return self._alive(b).uuid

    def nvmlDeviceGetName(self, b: Board) -> str:
        return self._alive(b).name

    def nvmlDeviceGetMemoryInfo(self, b: Board) -> Any:
        b = self._alive(b)
        return SimpleNamespace(total=b.memory_total, used=b.memory_used, free=b.memory_total - b.memory_used)

    def nvmlDeviceGetCudaComputeCapability(self, b: Board) -> tuple[int, int]:
        return (8, 9)

    def nvmlDeviceGetPciInfo(self, b: Board) -> Any:
        return SimpleNamespace(busId=self._alive(b).pci_bus_id.encode())

    def nvmlDeviceGetTemperature(self, b: Board, sensor: int) -> int:
        return self._sensed(b).temperature

    def nvmlDeviceGetTemperatureThreshold(self, b: Board, threshold: int) -> int:
        b = self._alive(b)
        if threshold != self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN or b.slowdown_temperature is None:
            raise NVMLError_NotSupported("Not Supported")
        return b.slowdown_temperature

    def nvmlDeviceGetCurrentClocksEventReasons(self, b: Board) -> int:
        return self._sensed(b).clock_event_reasons

    def nvmlDeviceGetTotalEnergyConsumption(self, b: Board) -> int:
        if not self._alive(b).energy_counter:
            raise NVMLError_NotSupported("Not Supported")
        return self._sensed(b).energy_mj

    def nvmlDeviceGetClockInfo(self, b: Board, kind: int) -> int:
        b = self._sensed(b)
        if kind == self.NVML_CLOCK_SM:
            return b.sm_clock_mhz
        if kind == self.NVML_CLOCK_MEM:
            return b.mem_clock_mhz
        raise NVMLError_InvalidArgument("Invalid Argument")

    def nvmlDeviceGetPersistenceMode(self, b: Board) -> int:
        return self._alive(b).persistence

    def nvmlDeviceGetPowerUsage(self, b: Board) -> int:
        return self._alive(b).draw_mw

    def nvmlDeviceGetPowerManagementLimit(self, b: Board) -> int:
        return self._alive(b).limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, b: Board) -> int:
        return self._alive(b).default_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, b: Board) -> int:
        return self._alive(b).limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, b: Board) -> list[int]:
        b = self._alive(b)
        return [b.min_mw, b.max_mw]

    def nvmlDeviceGetP2PStatus(self, a: Board, b: Board, cap: int) -> int:
        return self.NVML_P2P_STATUS_OK if self.p2p else self.NVML_P2P_STATUS_NOT_SUPPORTED

    # -- setters --------------------------------------------------------------------------------
    def nvmlDeviceSetPowerManagementLimit(self, b: Board, mw: int) -> None:
        b = self._alive(b)
        if not b.settable:
            raise NVMLError_NotSupported("Not Supported")
        if not self.root:
            raise NVMLError_NoPermission("Insufficient Permissions")
        if not b.min_mw <= mw <= b.max_mw:
            raise NVMLError_InvalidArgument("Invalid Argument")
        if b.on_set:
            b.on_set(mw)
        b.sets.append(mw)
        if not b.silent_setter:
            b.limit_mw = mw
            if self.physics:
                self.physics.limit(b, mw)

    def nvmlDeviceSetPersistenceMode(self, b: Board, mode: int) -> None:
        if not self.root:
            raise NVMLError_NoPermission("Insufficient Permissions")
        self._alive(b).persistence = mode


class Physics:
    """What makes a fake board's counters move: nothing by default (they stay where a test puts them)."""

    def sense(self, b: Board) -> None:
        pass

    def limit(self, b: Board, mw: int) -> None:
        pass


class SimulatedPhysics(Physics):
    """Boards whose limit, energy counter, temperature and clocks are the simulator's power model (/_sim/power).

    The fake NVML then behaves like real boards under a real engine: a cap set through NVML slows
    the simulator, and the energy counter moves with the simulated draw.
    """

    def __init__(self, endpoint: str, api_key: str | None = None) -> None:
        self.endpoint = endpoint
        self.api_key = api_key

    def limit(self, b: Board, mw: int) -> None:
        status, body = request(
            f"{self.endpoint}/_sim/power", 5.0, body={"index": b.index, "limit_w": mw / 1000}, api_key=self.api_key
        )
        assert status == 200, body

    def sense(self, b: Board) -> None:
        status, body = request(f"{self.endpoint}/_sim/power", 5.0, api_key=self.api_key)
        assert status == 200, body
        g = json.loads(body)["gpus"][b.index]
        b.energy_mj, b.temperature = g["energy_mj"], round(g["temperature_c"])
        b.sm_clock_mhz, b.mem_clock_mhz, b.draw_mw = g["sm_clock_mhz"], g["mem_clock_mhz"], round(g["draw_w"] * 1000)


def two_4090s(**kwargs: Any) -> FakeNvml:
    """Two RTX 4090s: 150-600 W constraints, 450 W default, no P2P."""
    boards = [
        Board(0, "GPU-11111111-2222-3333-4444-555555555555", pci_bus_id="00000000:01:00.0"),
        Board(1, "GPU-66666666-7777-8888-9999-000000000000", pci_bus_id="00000000:41:00.0"),
    ]
    return FakeNvml(boards, **kwargs)


def no_driver() -> FakeNvml:
    """A machine without the NVIDIA driver: NVML's library is not found."""
    return FakeNvml([], driver=False)
