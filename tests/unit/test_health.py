from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import simserver

from deployctl.cli import cli
from deployctl.engines import dialects
from deployctl.probe import health
from deployctl.sim import latency
from deployctl.sim.config import SimConfig

FAST = latency.LatencyModel(ttft_base_ms=5, prefill_tokens_per_s=1e6, itl_ms=2, itl_per_stream_ms=0)
EXPECTED = health.Expected(
    {"model_id": "/data/models/m", "max_input_tokens": 1000, "max_total_tokens": 2000, "max_concurrent_requests": 16}
)
VLLM_EXPECTED = health.Expected({"id": "m", "max_model_len": 2000})


def _cfg(**kw: object) -> SimConfig:
    base = {
        "model_id": "/data/models/m",
        "max_input_tokens": 1000,
        "max_total_tokens": 2000,
        "max_concurrent_requests": 16,
        "load_seconds": 0,
        "latency": FAST,
    }
    return SimConfig(**{**base, **kw})  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthy_endpoint_exits_0_with_ttft_and_rate() -> None:
    with simserver.running(_cfg()) as url:
        r = health.check(url, EXPECTED)
    assert r.status == "healthy" and r.exit_code == 0
    # Measured, not bounded: how fast a loaded test host answers is no property of `health`. The one
    # timing rule (a first token slower than --max-ttft-ms is degraded) is tested one-sidedly below.
    assert r.ttft_ms is not None and r.ttft_ms > 0
    assert r.tokens_per_s is not None and r.tokens_per_s > 0
    assert [c.name for c in r.checks] == ["health", "info", "generate"]


def test_info_that_differs_from_the_plan_is_degraded() -> None:
    with simserver.running(_cfg(max_total_tokens=4096)) as url:
        r = health.check(url, EXPECTED)
    assert r.exit_code == 1
    assert "max_total_tokens 4096 != plan 2000" in r.checks[1].detail


def test_slow_first_token_is_degraded() -> None:
    slow = latency.LatencyModel(ttft_base_ms=300, prefill_tokens_per_s=1e6, itl_ms=1, itl_per_stream_ms=0)
    with simserver.running(_cfg(latency=slow)) as url:
        r = health.check(url, EXPECTED, max_ttft_ms=100)
    assert r.exit_code == 1 and "slower than 100 ms" in r.checks[-1].detail


def test_nothing_listening_is_down() -> None:
    r = health.check(f"http://127.0.0.1:{_free_port()}", EXPECTED, timeout=2)
    assert r.exit_code == 5 and r.checks[0].detail == "nothing answers"


def test_loading_is_down() -> None:
    with simserver.running(_cfg(load_seconds=30)) as url:
        r = health.check(url, EXPECTED)
    assert r.exit_code == 5 and "503" in r.checks[0].detail


@pytest.mark.parametrize(("key", "code"), [(None, 5), ("wrong", 5), ("k-7f3a9", 0)])
def test_api_key_is_needed_to_generate(key: str | None, code: int) -> None:
    with simserver.running(_cfg(api_key="k-7f3a9")) as url:
        r = health.check(url, EXPECTED, api_key=key)
    assert r.exit_code == code
    if code:
        assert "401" in r.checks[-1].detail
    assert "k-7f3a9" not in str(r.as_dict())


def _vllm(**kw: object) -> SimConfig:
    return _cfg(engine="vllm", model_id="m", model_path="/data/models/m", max_input_tokens=1999, **kw)


def test_vllm_endpoint_is_checked_through_its_own_routes() -> None:
    with simserver.running(_vllm(api_key="k-1")) as url:
        r = health.check(url, VLLM_EXPECTED, api_key="k-1", dialect=dialects.OPENAI)
    assert r.status == "healthy", r.checks
    assert "max_model_len 2000" in r.checks[1].detail
    assert r.tokens == 16 and r.ttft_ms is not None


def test_vllm_model_card_that_differs_from_the_plan_is_degraded() -> None:
    with simserver.running(_vllm(max_total_tokens=4096)) as url:
        r = health.check(url, VLLM_EXPECTED, dialect=dialects.OPENAI)
    assert r.exit_code == 1 and "max_model_len 4096 != plan 2000" in r.checks[1].detail


def test_vllm_wrong_key_is_down_and_says_401() -> None:
    with simserver.running(_vllm(api_key="k-1")) as url:
        r = health.check(url, VLLM_EXPECTED, api_key="wrong", dialect=dialects.OPENAI)
    assert r.exit_code == health.DOWN and "401" in r.checks[-1].detail


@pytest.mark.parametrize("command", [["health", "--json"], ["bench", "run", "--concurrency", "1", "--json"]])
def test_health_and_bench_find_the_stack_through_the_spec_file(tmp_path: Path, command: list[str]) -> None:
    root = tmp_path
    port = _free_port()
    spec_file = root / "site.yaml"
    spec_file.write_text(f"name: t\nengine: vllm\nserve:\n  port: {port}\nstack_dir: somewhere/stack\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["render", "--simulate", "-f", str(spec_file)]).exit_code == 0
    result = runner.invoke(cli, [*command, "-f", str(spec_file)])
    if command[0] == "health":
        assert result.exit_code == health.DOWN and json.loads(result.stdout)["endpoint"] == f"http://127.0.0.1:{port}"
    else:  # nothing listens: bench names the vLLM route it asked
        assert result.exit_code == 1 and f"http://127.0.0.1:{port}/v1/models" in result.stderr
