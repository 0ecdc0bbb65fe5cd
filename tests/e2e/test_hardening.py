"""The simulated stack on the real engine runs with least privilege and still passes health."""

from __future__ import annotations

import json
import subprocess

import requests

from .conftest import Project


def _inspect(container: str) -> dict[str, object]:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
    data: dict[str, object] = json.loads(out.stdout)[0]
    return data


def _exec(container: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", container, *cmd], capture_output=True, text=True, timeout=30)


def test_simulated_stack_runs_unprivileged_read_only_and_healthy(project: Project) -> None:
    up = project.run("up", "--simulate")
    assert up.returncode == 0, up.stderr
    [container] = project.containers()
    attrs = _inspect(container)
    host, config = attrs["HostConfig"], attrs["Config"]
    assert isinstance(host, dict) and isinstance(config, dict)
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["ReadonlyRootfs"] is True and host["Init"] is True
    assert host["PidsLimit"] == 256 and host["Memory"] == 512 * 1024 * 1024
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert config["User"] == "65534:65534"
    # What the process really has: uid nobody, no capability in any set, a root it cannot write.
    assert _exec(container, "id", "-u").stdout.strip() == "65534"
    status = _exec(container, "grep", "^Cap", "/proc/1/status").stdout
    assert status and all(line.split()[1] == "0000000000000000" for line in status.splitlines()), status
    assert _exec(container, "touch", "/opt/x").returncode != 0
    assert _exec(container, "touch", "/tmp/x").returncode == 0  # the bounded tmpfs
    health = project.run("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    assert json.loads(health.stdout)["status"] == "healthy"
    # No fault injection asked for: the control routes are not there.
    assert requests.post(f"{project.url}/_sim/stall?seconds=30", timeout=5).status_code == 404
    assert project.run("down").returncode == 0
