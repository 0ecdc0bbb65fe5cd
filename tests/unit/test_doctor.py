from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers.fake_nvml import two_4090s

from deployctl import spec
from deployctl.cli import cli
from deployctl.docker import EngineInfo
from deployctl.hardware import inventory
from deployctl.hardware.nvml import Nvml
from deployctl.ops import doctor

DOCKER_INFO = EngineInfo(server_version="27.3.1", root_dir="/var/lib/docker", runtimes=["nvidia", "runc"])


def _checks(host_lib: object | None, docker_info: EngineInfo | None, text: str = "") -> dict[str, doctor.Check]:
    ctx = doctor.Context(spec=spec.parse(text))
    if host_lib is None:
        ctx.host_error = "NVIDIA driver not found"
    else:
        with Nvml(host_lib) as n:
            ctx.host = n.host()
    ctx.docker_info = docker_info
    ctx.docker_error = None if docker_info else "the Docker engine is not reachable"
    return {c.name: c for c in doctor.run(ctx, lambda bind, port: True)}


def test_no_driver_fails_the_gpu_checks_with_hints() -> None:
    checks = _checks(None, DOCKER_INFO)
    assert checks["nvidia driver"].status == "FAIL" and "install the NVIDIA driver" in checks["nvidia driver"].hint
    assert checks["gpus"].status == "FAIL"


def test_two_4090s_report_p2p_persistence_and_power_policy() -> None:
    lib = two_4090s()
    checks = _checks(lib, DOCKER_INFO, "power:\n  limit_watts: 300\n")
    assert checks["gpu 0"].status == "OK" and "compute 8.9" in checks["gpu 0"].detail
    assert checks["p2p"].status == "WARN" and "NCCL_P2P_DISABLE=1" in checks["p2p"].hint
    # True for both engines' stacks (test_helm.py renders both): vLLM gets the flag on top.
    assert "both engines" in checks["p2p"].hint and "--disable-custom-all-reduce for vLLM" in checks["p2p"].hint
    assert checks["persistence mode"].status == "WARN"
    assert (
        checks["power limits"].status == "WARN"
        and "sudo deployctl power set 300 --persist" in checks["power limits"].hint
    )
    assert checks["nvidia container toolkit"].status == "OK"


def test_docker_unreachable_fails_its_check() -> None:
    checks = _checks(two_4090s(), None)
    assert checks["docker engine"].status == "FAIL"
    assert checks["nvidia container toolkit"].status == "FAIL"


def test_doctor_cli_json_and_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "NVML_LIB", two_4090s())
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    data = json.loads(result.stdout)
    names = [c["name"] for c in data["checks"]]
    assert names[:3] == ["nvidia driver", "gpu 0", "gpu 1"]
    assert result.exit_code == (0 if data["ok"] else 1)
    assert {"docker engine", "compose v2", "docker socket", "serving port", "/dev/shm"} <= set(names)


def test_a_running_open_stack_is_flagged() -> None:
    ctx = doctor.Context(spec=spec.parse(""), docker_info=DOCKER_INFO, host_error="no driver")
    assert doctor._exposure(ctx).status == "OK"
    ctx.open_stack = "0.0.0.0:8080"
    check = doctor._exposure(ctx)
    assert check.status == "FAIL" and "0.0.0.0:8080" in check.detail and "api_key_env" in check.hint
