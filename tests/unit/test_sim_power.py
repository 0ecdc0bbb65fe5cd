"""The simulator's power model (sim/power.py) and its control route, and the NVML adapter's new readings."""

from __future__ import annotations

import json

import pytest
from helpers.fake_nvml import two_4090s
from helpers.simserver import running

from deployctl.hardware.nvml import NotSupported, Nvml
from deployctl.http import request
from deployctl.sim.config import SimConfig, from_args
from deployctl.sim.latency import LatencyModel
from deployctl.sim.power import RTX4090, SimulatedGpus


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_decode_keeps_its_speed_until_the_cap_cuts_the_memory_clock() -> None:
    base = LatencyModel(ttft_base_ms=20, prefill_tokens_per_s=10_000, itl_ms=10, itl_per_stream_ms=0.2)
    # docs/power.md: memory clock full down to 250 W, then in proportion to the power above 30 W idle.
    for cap in (450, 400, 300, 250):
        assert RTX4090.latency(base, cap).itl_ms == pytest.approx(10)
    assert RTX4090.latency(base, 200).itl_ms == pytest.approx(10 * 220 / 170)
    assert RTX4090.latency(base, 150).itl_ms == pytest.approx(10 * 220 / 120)


def test_prefill_follows_the_core_clock_which_falls_with_the_cube_root_of_power() -> None:
    base = LatencyModel(prefill_tokens_per_s=10_000)
    # Uncapped serving wants 380 W: caps at or above it leave prefill alone.
    assert RTX4090.latency(base, 450).prefill_tokens_per_s == pytest.approx(10_000)
    assert RTX4090.latency(base, 380).prefill_tokens_per_s == pytest.approx(10_000)
    # 300 W: (300 - 90) / (380 - 90) of the dynamic power, cube root of it for the clock.
    assert RTX4090.latency(base, 300).prefill_tokens_per_s == pytest.approx(10_000 * (210 / 290) ** (1 / 3))
    assert RTX4090.sm_fraction(300) < RTX4090.sm_fraction(350) < 1.0


def test_the_energy_counter_integrates_the_draw_busy_and_idle() -> None:
    clock = Clock()
    gpus = SimulatedGpus(RTX4090, 2, clock=clock)
    clock.t += 10  # idle: 30 W for 10 s
    gpus.streams_changed(3)
    clock.t += 2  # busy, uncapped: 380 W for 2 s
    gpus.set_limit(1, 250)
    clock.t += 4  # busy: GPU 0 at 380 W, GPU 1 capped at 250 W
    state = gpus.state()["gpus"]
    assert state[0]["energy_mj"] == (30 * 10 + 380 * 6) * 1000
    assert state[1]["energy_mj"] == (30 * 10 + 380 * 2 + 250 * 4) * 1000
    assert state[1]["draw_w"] == 250 and state[1]["temperature_c"] == pytest.approx(30 + 0.12 * 250)
    assert state[0]["mem_clock_mhz"] == 10501 and state[1]["sm_clock_mhz"] < state[0]["sm_clock_mhz"]
    gpus.streams_changed(0)
    assert gpus.state()["gpus"][0]["sm_clock_mhz"] == 210  # idle clocks
    with pytest.raises(ValueError, match="outside the simulated range of 150-600 W"):
        gpus.set_limit(0, 100)


def test_the_control_route_exists_only_when_enabled_and_demands_the_api_key() -> None:
    with running(SimConfig(load_seconds=0)) as url:
        assert request(f"{url}/_sim/power", 5)[0] == 404
    cfg = from_args(["--num-shard", "2", "--api-key", "k"], {"SIM_POWER_MODEL": "rtx4090", "SIM_LOAD_SECONDS": "0"})
    with running(cfg) as url:
        assert request(f"{url}/_sim/power", 5)[0] == 401
        assert request(f"{url}/_sim/power", 5, body={"index": 0, "limit_w": 300})[0] == 401
        status, body = request(f"{url}/_sim/power", 5, body={"index": 1, "limit_w": 300}, api_key="k")
        assert status == 200
        gpus = json.loads(body)["gpus"]
        assert [g["limit_w"] for g in gpus] == [450, 300]
        status, body = request(f"{url}/_sim/power", 5, body={"index": 0, "limit_w": 90}, api_key="k")
        assert status == 422 and b"outside the simulated range" in body


def test_nvml_reads_energy_temperature_and_clocks() -> None:
    fake = two_4090s()
    fake.boards[1].energy_mj, fake.boards[1].temperature = 123_456_789, 66
    fake.boards[1].sm_clock_mhz, fake.boards[1].mem_clock_mhz = 2505, 10501
    with Nvml(fake) as nvml:
        r = nvml.reading(1)
        assert (r.energy_mj, r.temperature_c, r.sm_clock_mhz, r.mem_clock_mhz) == (123_456_789, 66, 2505, 10501)
        fake.boards[0].energy_counter = False
        with pytest.raises(NotSupported, match="GPU 0 energy counter: not supported"):
            nvml.reading(0)


def test_the_simulator_package_imports_nothing_else_of_deployctl() -> None:
    # The simulator image carries deployctl/__init__.py and deployctl/sim/ only (images/build.py).
    import ast
    from pathlib import Path

    import deployctl.sim

    outside = []
    for source in Path(deployctl.sim.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            outside += [
                f"{source.name}: {n}" for n in names if n.startswith("deployctl.") and not n.startswith("deployctl.sim")
            ]
    assert outside == []
