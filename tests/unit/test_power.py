"""Power limits against fake RTX 4090s: constraints, root, unsupported boards, silent setters, no driver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fake_nvml import FakeNvml, no_driver, two_4090s

from deployctl.cli import cli
from deployctl.hardware import inventory, persist
from deployctl.hardware import power as pw
from deployctl.hardware.nvml import Nvml, NvmlError

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNvml:
    nvml = two_4090s()
    monkeypatch.setattr(inventory, "NVML_LIB", nvml)
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    return nvml


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args))


def limits(nvml: FakeNvml) -> list[int]:
    return [b.limit_mw for b in nvml.boards]


def test_gpus_and_power_show_speak_watts(fake: FakeNvml) -> None:
    result = invoke("gpus", "--json")
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert [g["uuid"] for g in data["gpus"]] == [b.uuid for b in fake.boards]
    g0 = data["gpus"][0]
    assert (
        g0["power"]["min_limit_w"] == 150
        and g0["power"]["max_limit_w"] == 600
        and g0["power"]["default_limit_w"] == 450
    )
    assert g0["compute_capability"] == "8.9" and data["p2p"] is False
    show = json.loads(invoke("power", "show", "--json").stdout)  # type: ignore[attr-defined]
    assert show["gpus"][1]["enforced_limit_w"] == 450


def test_dry_run_changes_nothing_and_says_what_would(fake: FakeNvml) -> None:
    result = invoke("power", "set", "300", "--dry-run")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    out = result.stdout  # type: ignore[attr-defined]
    assert out.count("would change 450 W -> 300 W") == 2 and "nothing was changed" in out
    assert limits(fake) == [450_000, 450_000] and all(not b.sets for b in fake.boards)
    assert not (Path(os.environ["DEPLOYCTL_STATE_DIR"]) / "power-state.json").exists()


def test_out_of_range_is_refused_with_the_allowed_range(fake: FakeNvml) -> None:
    result = invoke("power", "set", "100")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "allowed range of 150-600 W" in result.stderr  # type: ignore[attr-defined]
    assert all(not b.sets for b in fake.boards)


def test_set_reads_back_then_reset_restores_the_recorded_limits(fake: FakeNvml) -> None:
    fake.boards[1].limit_mw = 400_000  # an operator set GPU 1 by hand before
    assert invoke("power", "set", "300").exit_code == 0  # type: ignore[attr-defined]
    assert limits(fake) == [300_000, 300_000]
    assert invoke("power", "set", "280", "--gpu", "1").exit_code == 0  # type: ignore[attr-defined]
    assert limits(fake) == [300_000, 280_000]
    result = invoke("power", "reset")
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert limits(fake) == [450_000, 400_000]  # what was there before deployctl's first change
    assert pw.read_state(pw.state_path()) == {}


def test_gpus_are_addressed_by_uuid_and_state_survives_reordering(fake: FakeNvml) -> None:
    uuid1 = fake.boards[1].uuid
    assert invoke("power", "set", "320", "--gpu", uuid1).exit_code == 0  # type: ignore[attr-defined]
    assert limits(fake) == [450_000, 320_000]
    fake.boards.reverse()  # a reboot changed NVML's order
    for i, b in enumerate(fake.boards):
        b.index = i
    assert invoke("power", "reset", "--gpu", uuid1).exit_code == 0  # type: ignore[attr-defined]
    assert {b.uuid: b.limit_mw for b in fake.boards}[uuid1] == 450_000


def test_non_root_gets_a_clear_no_permission(fake: FakeNvml) -> None:
    fake.root = False
    result = invoke("power", "set", "300")
    assert result.exit_code == 3  # type: ignore[attr-defined]
    assert "permission denied" in result.stderr and "run as root" in result.stderr  # type: ignore[attr-defined]
    assert limits(fake) == [450_000, 450_000]


def test_unsupported_board_rolls_back_the_others(fake: FakeNvml) -> None:
    fake.boards[1].settable = False
    result = invoke("power", "set", "300")
    assert result.exit_code == 3 and "not supported" in result.stderr  # type: ignore[attr-defined]
    assert limits(fake) == [450_000, 450_000]  # GPU 0 was set, then put back
    assert fake.boards[0].sets == [300_000, 450_000]


def test_a_setter_that_silently_does_nothing_is_caught_by_the_read_back(fake: FakeNvml) -> None:
    fake.boards[0].silent_setter = True
    result = invoke("power", "set", "300")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "asked for 300 W but the board enforces 450 W" in result.stderr  # type: ignore[attr-defined]


def test_no_driver_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "NVML_LIB", no_driver())
    for args in (("gpus",), ("power", "show"), ("power", "set", "300")):
        result = invoke(*args)
        assert result.exit_code == 3  # type: ignore[attr-defined]
        assert result.stderr.startswith("error: NVIDIA driver not found")  # type: ignore[attr-defined]
        assert len(result.stderr.strip().splitlines()) == 1  # type: ignore[attr-defined]


def test_lost_gpu_is_named() -> None:
    nvml = two_4090s()
    nvml.boards[0].lost = True
    with Nvml(nvml) as session, pytest.raises(NvmlError, match="fallen off the bus"):
        session.gpus()


def test_persist_unit_golden_and_print(fake: FakeNvml, update_golden: bool) -> None:
    result = invoke("power", "set", "300", "--persist", "--print")
    text = result.stdout  # type: ignore[attr-defined]
    golden = GOLDEN / "deployctl-power.service"
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text()
    assert all(not b.sets for b in fake.boards)  # --print changes nothing
    for b in fake.boards:
        assert f"--id={b.uuid} --power-limit=300" in text


def test_persist_installs_and_enables_the_unit(fake: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "systemctl.log"
    stub = tmp_path / "systemctl"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    stub.chmod(0o755)
    monkeypatch.setenv("DEPLOYCTL_SYSTEMCTL", str(stub))
    result = invoke("power", "set", "300", "--persist", "--unit-dir", str(tmp_path / "units"))
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert (tmp_path / "units" / persist.UNIT_NAME).read_text().count("--power-limit=300") == 2
    assert log.read_text().splitlines() == ["daemon-reload", f"enable {persist.UNIT_NAME}"]


def test_a_unit_that_fails_to_install_is_one_error_that_says_the_limits_are_set(
    fake: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub = tmp_path / "systemctl"
    stub.write_text("#!/bin/sh\necho 'Access denied' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("DEPLOYCTL_SYSTEMCTL", str(stub))
    result = invoke("power", "set", "300", "--persist", "--unit-dir", str(tmp_path / "units"), "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)  # type: ignore[attr-defined]  # one document, not the report and then the error
    assert "systemctl daemon-reload failed: Access denied" in document["error"]
    assert "the limits are set and read back: GPU 0 300 W, GPU 1 300 W" in document["error"]
    assert limits(fake) == [300_000, 300_000]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n")
    smi.chmod(0o755)
    unit = tmp_path / persist.UNIT_NAME
    unit.write_text(persist.render_unit([persist.UnitLimit("GPU-1", 300)], nvidia_smi=str(smi)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_up_with_a_power_policy_needs_root_unless_skipped(
    fake: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployctl import spec
    from deployctl.ops import power_policy

    s = spec.parse("power:\n  limit_watts: 300\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Exception, match="needs root"):
        power_policy.apply_policy(s, simulate=False, skip=False)
    assert "skipped" in (power_policy.apply_policy(s, simulate=False, skip=True) or "")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert power_policy.apply_policy(s, simulate=False, skip=False) == "GPU 0, 1 capped at 300 W (read back)"
    assert limits(fake) == [300_000, 300_000]
