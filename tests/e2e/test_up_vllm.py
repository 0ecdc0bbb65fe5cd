"""up --simulate --engine vllm on the real engine: healthy, health 0, the openai client, bench, down."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import time

import openai
import pytest
import yaml
from helpers.loadrun import measured

from .conftest import Project


def _sim_latency(project: Project) -> dict[str, float]:
    compose = yaml.safe_load((project.stack / "compose.yaml").read_text())
    env = compose["services"]["engine"]["environment"]
    return {k: float(v) for k, v in env.items() if k.startswith("SIM_") and k != "SIM_ENGINE"}


def _round_trip_ms(endpoint: str) -> float:
    """Give the median time of a trivial request (POST /tokenize) made the way the load generator makes them."""
    import aiohttp

    async def measure() -> float:
        times = []
        async with aiohttp.ClientSession() as session:
            for _ in range(21):
                start = time.perf_counter()
                async with session.post(f"{endpoint}/tokenize", json={"prompt": "a b"}) as resp:
                    await resp.read()
                times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times[1:])

    return asyncio.run(measure())


def _container_ip(project: Project) -> str:
    [cid] = project.containers()
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", cid],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[0]


def test_vllm_up_health_openai_client_bench_down(project: Project) -> None:
    project.spec.write_text(
        f"name: {project.name}\nengine: vllm\nserve:\n  port: {project.port}\n  api_key_env: E2E_KEY\nstack_dir: stack\n"
    )
    env = {"E2E_KEY": "e2e-secret"}
    up = project.run("up", "--simulate", env=env)
    assert up.returncode == 0, up.stderr
    assert "/v1/completions" in up.stdout and "vllm" in up.stdout
    compose = yaml.safe_load((project.stack / "compose.yaml").read_text())
    svc = compose["services"]["engine"]
    assert svc["environment"]["SIM_ENGINE"] == "vllm" and svc["ports"] == [f"127.0.0.1:{project.port}:8000"]

    health = project.run("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    checks = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
    assert "max_model_len" in checks["info"]["detail"] and checks["generate"]["ok"]

    client = openai.OpenAI(base_url=f"{project.url}/v1", api_key="e2e-secret", max_retries=0)
    [card] = client.models.list().data
    done = client.completions.create(model=card.id, prompt="Hello from the e2e test", max_tokens=6)
    assert done.usage is not None and done.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model=card.id,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{project.url}/v1", api_key="wrong", max_retries=0).models.list()

    # Measured at the container's own address: docker-proxy (the published port's userland relay) adds
    # 1-4 ms per request on a busy 2-core host, which is the host's and not the load generator's error.
    direct = f"http://{_container_ip(project)}:8000"
    data = measured(
        project.run, f"bench run --endpoint {direct} --concurrency 1,8 --requests 20 --output-tokens 16 -o out"
    )
    assert data["config"]["api"] == "completions" and data["config"]["dialect"] == "openai"
    assert data["info"]["max_model_len"] > 0
    sim = _sim_latency(project)
    # The model times the server; a client also sees the request's trip to it, measured here alike.
    trip = _round_trip_ms(direct)
    for level in data["levels"]:
        assert level["completed"] == 20 and not level["errors"], level
        c = level["load"]
        true_ttft = (
            sim["SIM_TTFT_BASE_MS"] + data["config"]["prompt_tokens"] / sim["SIM_PREFILL_TOKENS_PER_S"] * 1000 + trip
        )
        true_itl = sim["SIM_ITL_MS"] + sim["SIM_ITL_PER_STREAM_MS"] * (c - 1)
        assert level["ttft_ms"]["p50"] == pytest.approx(true_ttft, abs=2.0), (c, level["ttft_ms"], true_ttft, trip)
        assert level["itl_ms"]["p50"] == pytest.approx(true_itl, abs=2.0), (c, level["itl_ms"], true_itl)
        assert level["output_tokens_per_s"] > 0

    down = project.run("down")
    assert down.returncode == 0, down.stderr
    assert project.containers() == [] and project.networks() == []
    assert project.run("health").returncode == 5  # not running (README exit-code table)
