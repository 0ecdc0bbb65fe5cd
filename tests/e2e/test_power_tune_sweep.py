"""`power tune` sweeps whose outcome is decided by measured throughput (short benches against an in-process
simulator whose power model the fake RTX 4090s drive): timing-dependent, so they live with the e2e tests
(no Docker needed). The unit suite keeps the refusals and restores (tests/unit/test_power_tune.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fake_nvml import FakeNvml
from helpers.simserver import running
from helpers.tune import DECODE, GOLDEN, KEY, ORIGINAL, fake, limits, recorded, sim, sim_limits, tune

from deployctl.cli import cli
from deployctl.hardware import persist
from deployctl.sim.config import SimConfig
from deployctl.sim.latency import LatencyModel

__all__ = ["fake", "sim"]


def test_the_sweep_finds_the_knee_the_model_implies_and_restores(fake: FakeNvml, sim: str) -> None:
    # The model (docs/power.md) keeps the memory clock, and so decode, whole down to 250 W; below it
    # the memory clock falls with the power above 30 W idle: 225 W gives 195/220 = 89% and 200 W
    # 170/220 = 77% of the speed. A decode-bound load therefore keeps 95% down to 250 W, not below.
    result = tune(sim, *DECODE, "--caps", "450,300,250,225,200,175,150", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {r["cap_w"]: r for r in data["rows"]}
    assert data["chosen_w"] == 250
    assert data["stopped_early"] and list(rows) == [450, 300, 250, 225, 200]  # 175 and 150 never set
    assert rows[200]["throughput_ratio"] == pytest.approx(170 / 220, abs=0.08)
    # Board power from the energy counter: the model draws 380 W per GPU uncapped, the cap below that.
    assert rows[450]["power_w"] == pytest.approx(2 * 380, rel=0.1)
    assert rows[250]["power_w"] == pytest.approx(2 * 250, rel=0.1)
    assert rows[250]["joules_per_token"] < 0.8 * rows[450]["joules_per_token"]
    assert rows[450]["peak_temperature_c"] > rows[250]["peak_temperature_c"]
    assert rows[450]["mem_clock_mhz"] == 10501 and rows[200]["mem_clock_mhz"] < 10501
    assert limits(fake) == ORIGINAL and sim_limits(sim) == [450, 450]
    assert {mw for b in fake.boards for mw in b.sets} == {450_000, 300_000, 250_000, 225_000, 200_000}
    assert recorded() == {}  # nothing left for `power reset` to do
    assert Path(data["files"]["png"]).stat().st_size > 0


def test_apply_persist_leaves_the_cap_and_writes_the_unit(
    fake: FakeNvml, sim: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update_golden: bool
) -> None:
    log = tmp_path / "systemctl.log"
    stub = tmp_path / "systemctl"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    stub.chmod(0o755)
    monkeypatch.setenv("DEPLOYCTL_SYSTEMCTL", str(stub))
    units = tmp_path / "units"
    result = tune(sim, *DECODE, "--caps", "450,250,200", "--apply", "--persist", "--unit-dir", str(units))
    assert result.exit_code == 0, result.stderr
    assert "lowest cap that holds: 250 W" in result.stdout and "left at 250 W" in result.stdout
    assert limits(fake) == [250_000, 250_000] and sim_limits(sim) == [250, 250]
    text = (units / persist.UNIT_NAME).read_text()
    golden = GOLDEN / "deployctl-power-tune.service"
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text()
    assert log.read_text().splitlines() == ["daemon-reload", f"enable {persist.UNIT_NAME}"]
    assert {v["original_w"] for v in recorded().values()} == {450}  # `power reset` goes back
    assert CliRunner().invoke(cli, ["power", "reset"]).exit_code == 0
    assert limits(fake) == ORIGINAL


def test_simulate_rehearses_against_the_simulator_and_says_so_on_every_line(sim: str, tmp_path: Path) -> None:
    # A prefill-bound load under a TTFT SLO: a 300-token prompt takes 300 ms at full core clock; the
    # model's core clock at a cap c below 380 W is ((c - 90) / 290) ** (1/3) of full, so prefill takes
    # 311 ms at 350 W and 335 ms at 300 W: with 2 ms of base, an SLO of 324 ms holds at 350 W, not at 300 W.
    cfg = SimConfig(
        load_seconds=0,
        api_key=KEY,
        power_model="rtx4090",
        latency=LatencyModel(ttft_base_ms=2, prefill_tokens_per_s=1000, itl_ms=4, itl_per_stream_ms=0),
    )
    os.environ["TUNE_KEY"] = KEY
    try:
        with running(cfg) as url:
            args = ["--simulate", "--concurrency", "2", "--prompt-tokens", "300", "--output-tokens", "8"]
            args += ["--caps", "450,400,350,300,250,200", "--slo-ttft", "324", "--settle", "0", "--window", "1.5"]
            args += ["--min-throughput", "0.5"]  # the SLO decides here: 8 tokens a request come in bursts
            result = tune(url, *args, "-o", str(tmp_path / "out"))
            assert result.exit_code == 0, result.stderr
            assert sim_limits(url) == [450]
    finally:
        del os.environ["TUNE_KEY"]
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    from_model = [ln for ln in lines if not ln.startswith("wrote ")]
    assert from_model and all(ln.startswith("simulated: ") for ln in from_model), lines
    assert "lowest cap that holds: 350 W" in result.stdout, result.stdout + result.stderr
    data = json.loads((tmp_path / "out" / "tune.json").read_text())
    assert data["simulated"] and all(r["simulated"] for r in data["rows"])
    assert [r["cap_w"] for r in data["rows"]] == [450, 400, 350, 300, 250]  # 300 and 250 miss: stop
