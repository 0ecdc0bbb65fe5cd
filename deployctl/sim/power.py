"""The simulator's power model: simulated power limits, an energy counter, and how a cap slows the engine.

Every figure this module gives is simulated. It lets a site rehearse `deployctl power tune`
without GPUs; it says nothing about a real card (docs/power.md explains the model and why).

Under load the simulated board wants `load_w`. A cap below that lowers the core clock, by the
cube root of the power left above the board's static draw (dynamic power grows about with
f x V^2, and V with f); prefill is compute-bound, so its speed follows the core clock. Decode is
bandwidth-bound: it keeps its speed until the cap falls below `mem_cut_w`, where the memory
clock (and so the bandwidth) falls in proportion to the power left above idle.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from deployctl.sim.latency import LatencyModel

# The simulator image carries deployctl/sim only (images/build.py): import nothing else of deployctl here.
CONTROL_PATH = "/_sim/power"  # its client: deployctl/hardware/simulated.py


@dataclass(frozen=True)
class BoardModel:
    """One simulated board: its NVML constraints and the few numbers the model stands on."""

    name: str
    min_w: float
    max_w: float
    default_w: float
    idle_w: float
    static_w: float
    load_w: float
    mem_cut_w: float
    sm_max_mhz: int
    mem_max_mhz: int
    sm_idle_mhz: int
    mem_idle_mhz: int
    ambient_c: float
    c_per_w: float

    def sm_fraction(self, cap_w: float) -> float:
        """Give the core clock under load as a fraction of full clock (1.0 when the cap does not bind)."""
        if cap_w >= self.load_w:
            return 1.0
        return float(((cap_w - self.static_w) / (self.load_w - self.static_w)) ** (1 / 3))

    def mem_fraction(self, cap_w: float) -> float:
        """Give the memory clock under load as a fraction of full clock."""
        if cap_w >= self.mem_cut_w:
            return 1.0
        return (cap_w - self.idle_w) / (self.mem_cut_w - self.idle_w)

    def draw_w(self, cap_w: float, busy: bool) -> float:
        return min(cap_w, self.load_w) if busy else self.idle_w

    def latency(self, base: LatencyModel, cap_w: float) -> LatencyModel:
        """Give the engine's latency model under this cap: prefill follows the core clock, decode the memory clock."""
        sm, mem = self.sm_fraction(cap_w), self.mem_fraction(cap_w)
        return replace(
            base,
            prefill_tokens_per_s=base.prefill_tokens_per_s * sm,
            itl_ms=base.itl_ms / mem,
            itl_per_stream_ms=base.itl_per_stream_ms / mem,
        )


RTX4090 = BoardModel(
    name="NVIDIA GeForce RTX 4090 (simulated)",
    # NVML constraints of a 4090 board: 150-600 W, 450 W default (design.md; tests/helpers/fake_nvml.py).
    min_w=150.0,
    max_w=600.0,
    default_w=450.0,
    # Idle draw as nvidia-smi shows an idle 4090 (tests/helpers/fake_nvml.py: 31.25 W).
    idle_w=30.0,
    # Modelling choices, not measurements (docs/power.md): memory, fans and board take ~90 W under
    # load whatever the core clock; serving (prefill and decode mixed) draws ~380 W uncapped, below
    # the 450 W TGP; the driver keeps GDDR6X at full clock down to a 250 W cap.
    static_w=90.0,
    load_w=380.0,
    mem_cut_w=250.0,
    # NVIDIA's RTX 4090 datasheet: 2520 MHz boost; 21 Gbps GDDR6X, which nvidia-smi shows as 10501 MHz.
    sm_max_mhz=2520,
    mem_max_mhz=10501,
    # Idle P8 clocks as nvidia-smi shows them on a 4090.
    sm_idle_mhz=210,
    mem_idle_mhz=405,
    # Modelling choice: 30 °C intake, 0.12 °C per watt (84 °C at 450 W, as the card runs at its TGP).
    ambient_c=30.0,
    c_per_w=0.12,
)
MODELS = {"rtx4090": RTX4090}


class SimulatedGpus:
    """The simulated boards of one simulator: limits, energy counters (integrated over time) and readings."""

    def __init__(self, model: BoardModel, count: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self.limits = [model.default_w] * count
        self.energy_j = [0.0] * count
        self.busy = False
        self._clock = clock
        self._last = clock()

    def _advance(self) -> None:
        now = self._clock()
        dt, self._last = now - self._last, now
        for i, cap in enumerate(self.limits):
            self.energy_j[i] += self.model.draw_w(cap, self.busy) * dt

    def streams_changed(self, streams: int) -> None:
        """Note that the engine went busy or idle (the counters integrate the draw up to now first)."""
        self._advance()
        self.busy = streams > 0

    def set_limit(self, index: int, watts: float) -> None:
        m = self.model
        if not 0 <= index < len(self.limits):
            raise ValueError(f"no simulated GPU {index} (there are {len(self.limits)})")
        if not m.min_w <= watts <= m.max_w:
            raise ValueError(f"{watts:g} W is outside the simulated range of {m.min_w:g}-{m.max_w:g} W")
        self._advance()
        self.limits[index] = watts

    def latency(self, base: LatencyModel) -> LatencyModel:
        """Give the latency model under the caps: the lowest-capped shard sets a tensor-parallel engine's pace."""
        return self.model.latency(base, min(self.limits))

    def state(self) -> dict[str, Any]:
        """Give every simulated GPU's limits, energy counter (mJ), draw, temperature and clocks."""
        self._advance()
        m = self.model
        gpus = []
        for i, cap in enumerate(self.limits):
            draw = m.draw_w(cap, self.busy)
            gpus.append(
                {
                    "index": i,
                    "uuid": f"GPU-5107a7ed-0000-0000-0000-{i:012d}",
                    "name": m.name,
                    "min_w": m.min_w,
                    "max_w": m.max_w,
                    "default_w": m.default_w,
                    "limit_w": cap,
                    "energy_mj": round(self.energy_j[i] * 1000),
                    "draw_w": draw,
                    "temperature_c": round(m.ambient_c + m.c_per_w * draw, 1),
                    "sm_clock_mhz": round(m.sm_max_mhz * m.sm_fraction(cap)) if self.busy else m.sm_idle_mhz,
                    "mem_clock_mhz": round(m.mem_max_mhz * m.mem_fraction(cap)) if self.busy else m.mem_idle_mhz,
                }
            )
        return {"simulated": True, "gpus": gpus}


def from_config(model: str | None, count: int) -> SimulatedGpus | None:
    """Give the simulated GPUs SIM_POWER_MODEL asks for (None: no power model, no control route)."""
    if not model:
        return None
    if model not in MODELS:
        raise SystemExit(f"simulator: SIM_POWER_MODEL={model!r} is unknown (known: {', '.join(MODELS)})")
    return SimulatedGpus(MODELS[model], max(1, count))


# -- the control route (server side) ---------------------------------------------------------------------
def add_routes(application: web.Application, gpus: SimulatedGpus, api_key: str | None) -> None:
    """Add GET/POST /_sim/power; with an API key set, both demand it, as the engine's own routes do."""
    expected = f"Bearer {api_key}" if api_key else None

    def allowed(req: web.Request) -> bool:
        given = req.headers.get("Authorization", "")
        return expected is None or hmac.compare_digest(given.encode(), expected.encode())

    async def show(req: web.Request) -> web.Response:
        if not allowed(req):
            return web.Response(status=401)
        return web.json_response(gpus.state())

    async def set_(req: web.Request) -> web.Response:
        if not allowed(req):
            return web.Response(status=401)
        try:
            body = await req.json()
            gpus.set_limit(int(body["index"]), float(body["limit_w"]))
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc), "error_type": "validation"}, status=422)
        return web.json_response(gpus.state())

    application.router.add_get(CONTROL_PATH, show)
    application.router.add_post(CONTROL_PATH, set_)
