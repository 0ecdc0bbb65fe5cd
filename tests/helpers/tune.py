"""Shared pieces of the `power tune` tests: two fake RTX 4090s coupled to an in-process simulator's power model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deployctl.cli import cli
from deployctl.hardware import inventory
from deployctl.hardware import power as pw
from deployctl.http import request
from deployctl.sim.config import SimConfig
from deployctl.sim.latency import LatencyModel
from helpers.fake_nvml import FakeNvml, SimulatedPhysics, two_4090s
from helpers.simserver import running

GOLDEN = Path(__file__).parents[1] / "golden"
KEY = "tune-test-key"
FAST = LatencyModel(ttft_base_ms=2, prefill_tokens_per_s=100_000, itl_ms=10, itl_per_stream_ms=0)
# A decode-bound load: 16 prompt tokens, 24 generated, 4 in flight.
DECODE = ["--concurrency", "4", "--prompt-tokens", "16", "--output-tokens", "24", "--settle", "0", "--window", "1.5"]
ORIGINAL = [450_000, 450_000]


@pytest.fixture
def sim() -> Iterator[str]:
    cfg = SimConfig(load_seconds=0, api_key=KEY, power_model="rtx4090", num_shard=2, latency=FAST)
    with running(cfg) as url:
        yield url


@pytest.fixture
def fake(sim: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNvml:
    board = two_4090s(physics=SimulatedPhysics(sim, KEY))
    monkeypatch.setattr(inventory, "NVML_LIB", board)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TUNE_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    return board


def tune(sim: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["power", "tune", "--endpoint", sim, "--api-key-env", "TUNE_KEY", *args])


def limits(fake: FakeNvml) -> list[int]:
    return [b.limit_mw for b in fake.boards]


def sim_limits(url: str) -> list[float]:
    status, body = request(f"{url}/_sim/power", 5, api_key=KEY)
    assert status == 200
    return [g["limit_w"] for g in json.loads(body)["gpus"]]


def recorded() -> dict[str, Any]:
    return pw.read_state(pw.state_path())
