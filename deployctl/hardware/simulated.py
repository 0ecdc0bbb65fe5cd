"""The simulator's boards (its power model, deployctl/sim/power.py) behind the calls NVML's boards answer.

`power tune --simulate` drives these through the simulator's /_sim/power route; every figure is simulated.
"""

from __future__ import annotations

import json
from typing import Any

from deployctl.errors import DeployctlError, InputError
from deployctl.gpus.gpu import Reading
from deployctl.hardware.power import TOLERANCE_W, GpuPower
from deployctl.http import request

CONTROL_PATH = "/_sim/power"  # the route deployctl/sim/power.py serves


class SimulatedControl:
    """The simulator's boards behind the same calls as NVML's (deployctl.hardware.power.NvmlControl)."""

    simulated = True

    def __init__(self, endpoint: str, api_key: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self._originals = {g.index: g.limit_w for g in self.gpus()}

    def _call(self, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        url = self.endpoint + CONTROL_PATH
        status, raw = request(url, 10.0, body=body, api_key=self.api_key)
        if status is None:
            raise DeployctlError(f"the simulator at {self.endpoint} does not answer", "is the stack running?")
        if status == 404:
            raise InputError(
                f"the simulator at {self.endpoint} has no power model",
                "start it with `deployctl up --simulate --sim-fault power-model=rtx4090`",
            )
        if status == 401:
            raise InputError(f"{url}: the simulator wants the stack's API key", "pass --api-key-env")
        if status != 200:
            raise DeployctlError(f"{url} answered {status}: {raw[:200].decode(errors='replace')}")
        gpus: list[dict[str, Any]] = json.loads(raw)["gpus"]
        return gpus

    def gpus(self) -> list[GpuPower]:
        return [
            GpuPower(g["index"], g["uuid"], g["name"], g["min_w"], g["max_w"], g["default_w"], g["limit_w"])
            for g in self._call()
        ]

    def check(self) -> None:
        """Nothing to refuse: a simulated cap needs no root."""

    def set_limit(self, watts: float) -> None:
        for index in self._originals:
            enforced = self._call({"index": index, "limit_w": watts})[index]["limit_w"]
            if abs(enforced - watts) >= TOLERANCE_W:
                raise DeployctlError(f"simulated GPU {index}: asked for {watts:g} W, enforces {enforced:g} W")

    def readings(self) -> list[Reading]:
        return [
            Reading(
                energy_mj=g["energy_mj"],
                temperature_c=g["temperature_c"],
                sm_clock_mhz=g["sm_clock_mhz"],
                mem_clock_mhz=g["mem_clock_mhz"],
            )
            for g in self._call()
        ]

    def restore(self) -> list[str]:
        problems = []
        for index, watts in self._originals.items():
            try:
                self._call({"index": index, "limit_w": watts})
            except DeployctlError as exc:
                problems.append(f"simulated GPU {index}: not restored to {watts:g} W: {exc.message}")
        return problems

    def keep(self) -> None:
        """A simulated cap lives as long as the simulator: nothing to record."""
