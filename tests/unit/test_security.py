"""Least privilege in rendered stacks (deployctl/engines/security.py and the Compose template)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from deployctl.engines import security, vllm
from unit.test_render import files_for, golden_plan


def _service(gpus: int, simulate: bool = False) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(files_for(gpus, simulate)["compose.yaml"])["services"]["engine"]
    return service


@pytest.mark.parametrize("simulate", [False, True])
@pytest.mark.parametrize("gpus", [1, 2])
def test_every_stack_drops_all_capabilities_and_runs_read_only_with_limits(gpus: int, simulate: bool) -> None:
    svc = _service(gpus, simulate)
    assert svc["cap_drop"] == ["ALL"] and "cap_add" not in svc
    assert svc["read_only"] is True and svc["init"] is True
    assert "no-new-privileges:true" in svc["security_opt"]
    assert 0 < svc["pids_limit"] <= 4096
    assert svc["mem_limit"].endswith("m") and int(svc["mem_limit"][:-1]) > 0
    assert svc["sysctls"] == {"net.ipv4.ip_unprivileged_port_start": 0}  # port 80 without NET_BIND_SERVICE
    scratch = [v for v in svc["volumes"] if v["type"] == "tmpfs"]
    assert scratch and all(v["tmpfs"]["size"] > 0 for v in scratch)  # every writable path is bounded
    assert "/tmp" in {v["target"] for v in scratch}


def test_the_simulator_runs_as_nobody_with_small_limits() -> None:
    svc = _service(2, simulate=True)
    assert svc["user"] == "65534:65534"
    assert svc["pids_limit"] == security.SIM_PIDS and svc["mem_limit"] == "512m"
    assert all(v["read_only"] for v in svc["volumes"] if v["type"] == "bind")


def test_tgi_keeps_root_but_writes_only_where_its_image_does() -> None:
    svc = _service(2)
    assert svc["user"] == "0:0"  # TGI >= 3.1 cannot start as another uid (issue #3082)
    targets = {v["target"] for v in svc["volumes"] if v["type"] == "tmpfs"}
    assert targets == {"/tmp", "/data", "/root/.cache", "/root/.triton"}
    model = next(v for v in svc["volumes"] if v["type"] == "bind")
    assert model["read_only"] is True and model["target"].startswith("/data/models/")


def test_memory_limit_grows_with_the_weights_it_must_hold() -> None:
    small, large = _service(1), _service(2)
    weights = sum(g.weights for g in golden_plan(2).gpus)
    assert int(large["mem_limit"][:-1]) * 1024 * 1024 >= 2 * weights
    assert int(large["mem_limit"][:-1]) > int(small["mem_limit"][:-1])


def test_vllm_runs_as_a_non_root_uid_with_home_on_its_tmpfs() -> None:
    s = vllm.container_security(10 * security.GIB, 1, 0)
    assert s.user == "1000:1000" and s.env["HOME"] == "/tmp"
    assert [x.path for x in s.scratch] == ["/tmp"]
    assert s.memory_bytes >= 20 * security.GIB


@pytest.mark.parametrize(("size", "expected"), [(None, 0), ("1gb", 1024**3), ("512m", 512 * 1024**2), ("64", 64)])
def test_shm_sizes_are_read_as_compose_writes_them(size: str | None, expected: int) -> None:
    assert security.shm_bytes(size) == expected
