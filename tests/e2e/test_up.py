"""up --simulate on the real engine: healthy, health 0, status, down; and the ways it goes wrong."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers.loadrun import measured

from .conftest import Project, deployctl, free_port


def test_up_health_status_down(project: Project) -> None:
    up = project.run("up", "--simulate")
    assert up.returncode == 0, up.stderr
    assert "ready (simulated engine)" in up.stdout and project.url in up.stdout and "curl" in up.stdout
    health = project.run("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["status"] == "healthy" and report["ttft_ms"] > 0
    status = project.run("status", "--json")
    assert status.returncode == 0, status.stdout
    data = json.loads(status.stdout)
    assert data["answering"] and data["endpoint"] == project.url and data["simulate"]
    [svc] = data["services"]
    assert svc["state"] == "running" and svc["restarts"] == 0 and svc["uptime_s"] >= 0
    # The KV cache the plan promised beside what the (simulated) engine said it allocated, from its log.
    kv = data["kv"]
    assert kv["planned_kv_tokens"] > 0 and kv["actual_kv_tokens"] == kv["planned_kv_tokens"] and not kv["short"]
    assert "KV-cache blocks:" in kv["engine_line"] and f"planned {kv['planned_kv_tokens']:,} tokens" in up.stdout
    table = project.run("status")
    assert f"engine allocated {kv['actual_kv_tokens']:,}" in table.stdout, table.stdout
    assert project.containers()
    down = project.run("down")
    assert down.returncode == 0, down.stderr
    assert project.containers() == [] and project.networks() == []
    assert project.run("health").returncode == 5  # not running
    assert project.run("status").returncode == 5
    assert project.run("down").returncode == 0  # again: nothing runs, still fine
    (project.stack / "compose.yaml").unlink()
    again = project.run("down")
    assert again.returncode == 0 and "nothing to stop" in again.stderr, again.stderr


def test_up_warns_when_the_engine_allocated_less_than_the_plan(project: Project) -> None:
    up = project.run("up", "--simulate", "--engine", "vllm", "--sim-fault", "kv-tokens=1000")
    assert up.returncode == 0, up.stderr
    assert "warning: the engine allocated 1,000 KV-cache tokens" in up.stderr, up.stderr
    kv = json.loads(project.run("status", "--json").stdout)["kv"]
    assert kv["actual_kv_tokens"] == 1000 and kv["short"] and "GPU KV cache size: 1,000 tokens" in kv["engine_line"]
    assert project.run("down").returncode == 0


def test_port_in_use_is_refused_before_anything_starts(project: Project) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", project.port))
        s.listen()
        up = project.run("up", "--simulate")
    assert up.returncode == 2
    assert f"port {project.port} on 127.0.0.1 is in use" in up.stderr
    assert project.containers() == []


def test_crash_mid_run_restarts_and_health_recovers(project: Project) -> None:
    up = project.run("up", "--simulate", "--sim-fault", "crash-after=2")
    assert up.returncode == 0, up.stderr
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 2}}
    for _ in range(2):
        assert requests.post(f"{project.url}/generate", json=body, timeout=10).status_code == 200
    with contextlib.suppress(requests.ConnectionError):  # the process dies with this request
        requests.post(f"{project.url}/generate", json=body, timeout=10)
    assert project.run("health").returncode == 5
    deadline = time.monotonic() + 60
    while project.run("health").returncode != 0:
        assert time.monotonic() < deadline, "the restart policy did not bring the engine back"
        time.sleep(1)
    [svc] = json.loads(project.run("status", "--json").stdout)["services"]
    assert svc["restarts"] >= 1


def test_never_healthy_times_out_with_log_tail(project: Project) -> None:
    up = project.run("up", "--simulate", "--sim-fault", "never-healthy", "--timeout", "6")
    assert up.returncode == 1
    assert "did not answer /health within 6s" in up.stderr
    assert "last log lines" in up.stderr and "simulator: serving" in up.stderr
    assert "Traceback" not in up.stderr


def test_api_key_is_enforced_and_never_printed(project: Project) -> None:
    secret = "e2e-secret-5c1d"
    project.spec.write_text(project.spec.read_text().replace("serve:\n", "serve:\n  api_key_env: E2E_API_KEY\n"))
    env = {"E2E_API_KEY": secret}
    outputs = []
    up = project.run("up", "--simulate", env=env)
    outputs.append(up.stdout + up.stderr)
    assert up.returncode == 0, up.stderr
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 2}}
    assert requests.post(f"{project.url}/generate", json=body, timeout=10).status_code == 401
    ok = requests.post(f"{project.url}/generate", json=body, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert ok.status_code == 200
    for args in (
        ("health",),
        ("health", "--json"),
        ("status", "--json"),
        ("status",),
        ("logs",),
        ("plan", "--simulate"),
    ):
        done = project.run(*args, env=env)
        outputs.append(done.stdout + done.stderr)
    assert project.run("health").returncode == 0  # the key comes from the stack's .env
    assert all(secret not in out for out in outputs)
    assert secret not in (project.stack / "compose.yaml").read_text()


def test_health_against_nothing_listening_exits_5(tmp_path) -> None:  # type: ignore[no-untyped-def]
    done = deployctl("health", "--endpoint", f"http://127.0.0.1:{free_port()}", "--stack-dir", str(tmp_path))
    assert done.returncode == 5 and "nothing answers" in done.stdout


def test_dockers_own_healthcheck_passes_so_compose_wait_works(project: Project) -> None:
    """The rendered healthcheck (curl on 127.0.0.1 inside the container) must pass, not just /health from outside."""
    assert project.run("render", "--simulate").returncode == 0
    done = project_compose(project, "up", "-d", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    [svc] = json.loads(project.run("status", "--json").stdout)["services"]
    assert svc["health"] == "healthy"


def project_compose(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "--project-directory", str(project.stack), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_doctor_here_fails_gpu_checks_and_passes_docker_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """This machine has no GPU but a running engine: GPU checks FAIL with a hint, Docker checks OK."""
    done = deployctl("doctor", "--json", cwd=tmp_path)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert done.returncode == 1
    assert checks["nvidia driver"]["status"] == "FAIL" and checks["nvidia driver"]["hint"]
    for name in ("docker engine", "compose v2", "docker socket"):
        assert checks[name]["status"] == "OK", checks[name]


def test_bench_against_a_simulated_stack_writes_json_csv_png(project: Project) -> None:
    assert project.run("up", "--simulate").returncode == 0
    data = measured(
        project.run, "bench --concurrency 1,4 --requests 16 --warmup 2 --output-tokens 8 --slo-ttft 500 -o out"
    )
    out = project.root / "out"
    assert json.loads((out / "bench.json").read_text()) == {k: v for k, v in data.items() if k != "files"}
    assert data["info"]["model_id"].startswith("/data/models/") and data["max_qps_under_slo"] > 0
    assert len((out / "bench.csv").read_text().splitlines()) == 3
    assert (out / "bench-latency.png").stat().st_size > 10_000 and (
        out / "bench-throughput.png"
    ).stat().st_size > 10_000


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_logs_follow_stopped_by_a_signal_exits_130_and_stops_docker_compose_logs(project: Project, signum: int) -> None:
    assert project.run("up", "--simulate").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployctl", "logs", "-F"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # following: a line came through docker compose logs
        children = _children(proc.pid)
        assert children, "no docker compose logs process under deployctl logs -F"
        proc.send_signal(signum)
        assert proc.wait(30) == 130  # README's table: interrupted
        assert "error: interrupted" in (proc.stderr.read() if proc.stderr else "")
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children):
            assert time.monotonic() < deadline, "docker compose logs --follow outlived deployctl logs -F"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_base_image_that_is_not_here_and_cannot_be_pulled_is_one_line(sim_image: str) -> None:
    done = deployctl(
        "image", "build-sim", "--base-image", "deployctl-test/no-such-base:1", "-t", "deployctl-test/never-sim:1"
    )
    assert done.returncode == 3, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: deployctl-test/no-such-base:1 is not on this host and cannot be pulled"), last
    assert "Traceback" not in done.stderr and "dial tcp" not in done.stderr and "lookup" not in done.stderr
