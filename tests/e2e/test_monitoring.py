"""A real Prometheus (Debian's binary) scrapes a simulated stack and the GPU exporter (fake NVML boards driven
by the simulator's power model); `bench run` loads it with a small KV pool (--sim-fault kv-tokens); every
dashboard panel's query must return data and the KV-full and engine-down alerts must fire.

The rules are the ones `deployctl monitor` renders, with their `for:` holds scaled to a twentieth and a
one-second scrape and evaluation interval, so the test waits seconds, not minutes. Everything it starts
(the stack, Prometheus on a port of its own with a temporary data folder, the exporter) is stopped.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_nvml import Board, FakeNvml, SimulatedPhysics
from helpers.promtools import tool

from deployctl import stackdir
from deployctl.monitoring import dashboards, exporter, scrape, thresholds
from deployctl.monitoring import render as monitoring

from .conftest import Project, free_port

HOLD_SCALE = 0.05  # KV full: 2 min -> 6 s; engine down: 1 min -> 3 s
KV_TOKENS = 300  # 8 requests of 64 + 64 tokens hold 1024: the pool is full while they run


def _get(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    doc = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def _firing(prom: str) -> set[str]:
    alerts = _get(f"{prom}/api/v1/alerts")["data"]["alerts"]
    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Give (config folder, URL) of a Prometheus started on the folder's prometheus.yml once written."""
    folder = tmp_path / "monitoring"
    port = free_port()
    box: dict[str, subprocess.Popen[bytes]] = {}

    def start() -> str:
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
        box["proc"] = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert box["proc"].poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                return urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
            except OSError:
                return False

        _wait("Prometheus to be ready", ready, 60)
        return url

    yield folder, start  # type: ignore[misc]
    proc = box.get("proc")
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def gpu_exporter(project: Project) -> Iterator[tuple[int, Any]]:
    """The exporter on a free loopback port over a fake RTX 4090 whose counters follow the stack's power model
    (the stack plans one GPU; the simulator's /_sim/power models its one board)."""
    fake = FakeNvml([Board(0, "GPU-11111111-2222-3333-4444-555555555555")], physics=SimulatedPhysics(project.url))
    port = free_port()
    stop, started = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=exporter.serve,
        kwargs={
            "port": port,
            "paths": (project.root,),
            "nvml_lib": fake,
            "ready": lambda _: started.set(),
            "stop": stop,
        },
        daemon=True,
    )
    thread.start()
    assert started.wait(10), "the exporter did not start"
    yield port, fake
    stop.set()
    thread.join(10)


def test_prometheus_scrapes_the_stack_and_the_alerts_fire(
    project: Project, prometheus: Any, gpu_exporter: tuple[int, Any]
) -> None:
    project.spec.write_text(
        f"name: {project.name}\nengine: vllm\nserve:\n  port: {project.port}\nstack_dir: stack\n"
        "monitoring:\n  slo_ttft_ms: 500\n  slo_itl_ms: 50\n"
    )
    up = project.run(
        "up",
        "--simulate",
        "--sim-fault",
        f"kv-tokens={KV_TOKENS}",
        "--sim-fault",
        "power-model=rtx4090",
        "--sim-fault",
        "itl-ms=40",
    )
    assert up.returncode == 0, up.stderr
    exporter_port, fake = gpu_exporter
    folder, start = prometheus

    # `deployctl monitor` renders what an operator would run; the test keeps its rules and dashboards
    # and renders the same files with shorter holds and intervals.
    mon = project.run(
        "monitor", "--stack-dir", "stack", "--exporter", f"127.0.0.1:{exporter_port}", "-o", "mon", "--json"
    )
    assert mon.returncode == 0, mon.stderr
    assert {"LLMKVCacheFull", "LLMEngineDown", "LLMTTFTSLOBurn", "LLMGpuHot"} <= set(json.loads(mon.stdout)["alerts"])
    stack = stackdir.read_stack(project.stack)
    assert stack is not None
    t = thresholds.from_plan(stack.plan, thresholds.Slo(500, 50), hold_scale=HOLD_SCALE)
    where = monitoring.Where(
        targets=scrape.Targets(engine=(f"127.0.0.1:{project.port}",), gpu=(f"127.0.0.1:{exporter_port}",)),
        prometheus_url="unused",
        with_gpus=True,
        interval="1s",
    )
    stackdir.write_tree(monitoring.files(t, where), folder, marker="prometheus.yml", what="monitoring folder")
    prom = start()

    _wait("both targets up", lambda: len(_query(prom, f'up{{deployctl_stack="{project.name}"}} == 1')) == 2, 60)
    bench: dict[str, subprocess.CompletedProcess[str]] = {}
    load = threading.Thread(
        target=lambda: bench.setdefault(
            "run",
            project.run(
                "bench", "run", "--concurrency", "8", "--requests", "96", "--warmup", "0",
                "--prompt-tokens", "64", "--output-tokens", "64", "-o", "bench", timeout=300,
            ),
        )
    )  # fmt: skip
    load.start()
    try:
        _wait("LLMKVCacheFull to fire under load", lambda: "LLMKVCacheFull" in _firing(prom), 120)
        usage = _query(prom, f'deployctl:kv_cache_usage:max{{deployctl_stack="{project.name}"}}')
        assert float(usage[0]["value"][1]) >= t.kv_full.value
    finally:
        load.join(300)
    assert bench["run"].returncode == 0, bench["run"].stderr[-2000:]

    # Every panel of every dashboard returns data from this Prometheus.
    empty = [
        f"{d.title} / {p.title}: {q.expr}"
        for d in dashboards.dashboards(t)
        for p in d.panels
        for q in p.queries
        if not _query(prom, q.expr)
    ]
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # The energy counter moved with the simulated draw: J/token is a real figure, not 0/0.
    energy = [q.expr for d in dashboards.dashboards(t) for p in d.panels if p.unit == "J" for q in p.queries]
    [joules] = _query(prom, energy[0])
    assert float(joules["value"][1]) > 0

    # Without Prometheus: health and status read the same facts from /metrics. One request that holds more
    # than the pool of 300 tokens keeps the KV cache full while they look.
    body = {"prompt": "hold the cache", "max_tokens": 400, "stream": True}
    req = urllib.request.Request(
        f"{project.url}/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as held:
        held.readline()
        health = project.run("health", "--json")
        status = project.run("status", "--json")
    assert health.returncode == 1, health.stdout + health.stderr
    verdicts = {v["alert"]: v["firing"] for v in json.loads(health.stdout)["metrics"]["verdicts"]}
    assert verdicts["LLMKVCacheFull"] and not verdicts["LLMErrorRateHigh"]
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["metrics"]["kv_cache_usage"] == 1.0

    # The engine goes away: its scrape fails and LLMEngineDown fires.
    down = project.run("down")
    assert down.returncode == 0, down.stderr
    _wait("LLMEngineDown to fire", lambda: "LLMEngineDown" in _firing(prom), 60)
    assert all(b.sets == [] for b in fake.boards)  # the exporter only read


def test_the_exporter_image_builds_offline_and_runs_the_exporter(sim_image: str) -> None:
    """`image build-exporter` on the suite's Debian base (which the simulator's build made sure of): the image
    holds everything the exporter imports; without a GPU driver in the container it says so in one line, exit 3."""
    import uuid

    from deployctl.images.build import DEBIAN_BASE

    from .conftest import deployctl as run
    from .conftest import image_ids, remove_images

    tag = f"deployctl-test/gpu-exporter:run-{uuid.uuid4().hex[:8]}"
    before = image_ids()
    built = run("image", "build-exporter", "--base-image", DEBIAN_BASE, "-t", tag, "--json", timeout=600)
    try:
        assert built.returncode == 0, built.stdout + built.stderr
        done = subprocess.run(["docker", "run", "--rm", tag, "--once"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stdout + done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: NVIDIA driver not found"), line
    finally:
        remove_images([tag], before)


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
@pytest.mark.parametrize("simulate", [False, True], ids=["engine", "simulator"])
def test_the_monitoring_profile_passes_compose_config(
    tmp_path: Path, docker_engine: None, engine: str, simulate: bool
) -> None:
    """The stack with its monitoring profile is valid Compose v2; the profile's services exist only when asked for."""
    from helpers.monitoring import plan, render_compose

    from deployctl import spec

    files = render_compose(plan(engine), simulate=simulate, api_key="k", monitoring=spec.Monitoring(enabled=True))
    stack = stackdir.write_stack(files, tmp_path / "stack")

    def config(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "--project-directory", str(stack), *args, "config"]
        return subprocess.run([*cmd, "--services"], capture_output=True, text=True)

    plain, profiled = config(), config("--profile", "monitoring")
    assert plain.returncode == 0 and profiled.returncode == 0, plain.stderr + profiled.stderr
    assert plain.stdout.split() == ["engine"]
    expected = {"engine", "prometheus", "grafana"} | (set() if simulate else {"gpu-exporter"})
    assert set(profiled.stdout.split()) == expected


def test_down_removes_a_running_monitoring_profile(project: Project, sim_image: str) -> None:
    """`deployctl down` takes the profile's containers with the engine (a plain `docker compose down` leaves them).

    The profile's own images cannot be pulled here: an override file (the stack's compose.override.yaml,
    which deployctl reads too) runs the simulator's image in their place, asleep.
    """
    project.write("monitoring:\n  enabled: true\n")
    up = project.run("up", "--simulate")
    assert up.returncode == 0, up.stderr
    # As PID 1, a bare `sleep` ignores SIGTERM, and each stop would wait out its grace period: the stand-in ends at it.
    asleep = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    stand_in = {"image": sim_image, "entrypoint": asleep, "command": []}
    (project.stack / "compose.override.yaml").write_text(
        json.dumps({"services": {"prometheus": stand_in, "grafana": {**stand_in, "environment": {}}}})
    )
    compose = ["docker", "compose", "--project-directory", str(project.stack)]
    files = ["-f", str(project.stack / "compose.yaml"), "-f", str(project.stack / "compose.override.yaml")]
    try:
        started = subprocess.run(
            [*compose, *files, "--profile", "monitoring", "up", "-d", "prometheus", "grafana"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        assert len(project.containers()) == 3  # the engine, and the profile's two
        down = project.run("down", "--json")
        assert down.returncode == 0, down.stdout + down.stderr
        assert json.loads(down.stdout)["left"] == [] and project.containers() == []
    finally:
        subprocess.run([*compose, *files, "--profile", "monitoring", "down", "-v", "-t", "1"], capture_output=True)
