"""The simulator in vLLM mode: the official `openai` client, vLLM's chunk shapes, auth, errors and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import requests
from helpers import simserver

from deployctl import spec
from deployctl.errors import InputError
from deployctl.ops import planning, probing
from deployctl.probe import load
from deployctl.sim import latency
from deployctl.sim.config import SimConfig, from_args

KEY = "sim-key"
MODEL = "tiny-llama"


def vllm_config(**kw: object) -> SimConfig:
    cfg = from_args(
        ["/data/models/tiny-llama", "--served-model-name", MODEL, "--max-model-len", "160", "--max-num-seqs", "8"],
        {
            "SIM_ENGINE": "vllm",
            "VLLM_API_KEY": KEY,
            "SIM_LOAD_SECONDS": "0",
            "SIM_TTFT_BASE_MS": "1",
            "SIM_ITL_MS": "1",
        },
    )
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    with simserver.running(vllm_config()) as url:
        yield url


@pytest.fixture(scope="module")
def client(sim: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim}/v1", api_key=KEY, max_retries=0)


def data_events(resp: requests.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in resp.text.splitlines() if line.startswith("data: ")]


def test_vllm_flags_and_key_are_read_from_its_own_command_line() -> None:
    cfg = vllm_config()
    assert (cfg.engine, cfg.model_id, cfg.model_path, cfg.port) == ("vllm", MODEL, "/data/models/tiny-llama", 8000)
    assert cfg.max_total_tokens == 160 and cfg.max_num_seqs == 8 and cfg.api_key == KEY
    flag_wins = from_args(["/m", "--api-key", "from-flag"], {"SIM_ENGINE": "vllm", "VLLM_API_KEY": "from-env"})
    assert flag_wins.api_key == "from-flag" and flag_wins.model_id == "/m"


def test_openai_client_completes_and_streams(client: openai.OpenAI) -> None:
    done = client.completions.create(model=MODEL, prompt="Hello there, simulator", max_tokens=5, seed=3)
    assert done.object == "text_completion" and done.model == MODEL
    assert done.choices[0].finish_reason == "length" and done.usage is not None
    assert done.usage.completion_tokens == 5 and done.usage.prompt_tokens == latency.count_tokens(
        "Hello there, simulator"
    )
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Hello there, simulator",
            max_tokens=5,
            seed=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == done.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_openai_client_chat_streams_role_first_then_content(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens == 4
    stream = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
        )
    )
    assert stream[0].choices[0].delta.role == "assistant" and stream[0].choices[0].delta.content == ""
    assert all(c.object == "chat.completion.chunk" for c in stream)
    content = "".join(c.choices[0].delta.content or "" for c in stream)
    assert content == chat.choices[0].message.content
    assert stream[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in stream), "no usage chunk unless stream_options asks"


def test_models_card_carries_max_model_len(client: openai.OpenAI) -> None:
    cards = client.models.list().data
    assert [c.id for c in cards] == [MODEL]
    assert cards[0].model_extra is not None and cards[0].model_extra["max_model_len"] == 160


def test_completion_stream_chunks_are_vllm_shaped(sim: str) -> None:
    body = {"prompt": "Hi", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}}
    resp = requests.post(f"{sim}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = data_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("cmpl-")
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, "length"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_auth_guards_v1_only_with_vllm_401_body(sim: str) -> None:
    denied = requests.get(f"{sim}/v1/models", timeout=5)
    assert denied.status_code == 401 and denied.json() == {"error": "Unauthorized"}
    wrong = requests.get(f"{sim}/v1/models", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    lower = requests.get(f"{sim}/v1/models", headers={"Authorization": f"bearer {KEY}"}, timeout=5)
    assert lower.status_code == 200
    for path in ("/health", "/metrics", "/version"):
        assert requests.get(f"{sim}{path}", timeout=5).status_code == 200, path


def test_prompt_over_max_model_len_is_400_in_vllm_envelope(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="word " * 200, max_tokens=10)
    err = caught.value.body
    assert isinstance(err, dict)
    assert err["param"] == "input_tokens" and err["code"] == 400 and err["type"] == "BadRequestError"
    assert "maximum context length is 160 tokens" in err["message"]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="other", prompt="Hi", max_tokens=2)


def test_metrics_use_vllm_names_and_count_tokens(client: openai.OpenAI, sim: str) -> None:
    before = requests.get(f"{sim}/metrics", timeout=5).text
    client.completions.create(model=MODEL, prompt="Hi", max_tokens=2)
    text = requests.get(f"{sim}/metrics", timeout=5).text
    assert "vllm:time_to_first_token_seconds_bucket" in text and "tgi_" not in text
    assert (
        f'vllm:generation_tokens_total{{engine="0",model_name="{MODEL}"}}' in text
    )  # labels sorted, as prometheus_client

    def generated(t: str) -> float:
        line = next(x for x in t.splitlines() if x.startswith("vllm:generation_tokens_total"))
        return float(line.rsplit(" ", 1)[1])

    assert generated(text) == generated(before) + 2


def test_load_generator_streams_completions_and_counts_tokens_from_usage(sim: str) -> None:
    w = load.Workload(endpoint=sim, prompt_tokens=20, output_tokens=7, api="completions", api_key=KEY, dialect="openai")
    results, _span, note = asyncio.run(load.closed_loop(w, 2, requests=4))
    assert "/tokenize" in note  # prompt length measured with vLLM's /tokenize
    assert len(results) == 4 and all(r.ok for r in results), [r.error for r in results]
    assert all(r.output_tokens == 7 and len(r.token_times) == 7 for r in results)
    assert all(r.first_token is not None and r.first_token > r.sent for r in results)


def test_bench_config_follows_the_stacks_engine(tmp_path: Path) -> None:
    s = spec_for(tmp_path, "vllm")
    planning.render_stack(s, planning.make_plan(s, simulate=True), simulate=True)
    common = {"endpoint": None, "stack_dir": s.stack_dir, "spec_path": None, "api_key_env": None, "preset": None}
    rest = {
        "concurrency": "1",
        "rate": None,
        "requests": 1,
        "warmup": 0,
        "prompt_tokens": None,
        "output_tokens": None,
        "seed": 1,
        "slo_ttft": None,
        "slo_itl": None,
        "slo_e2e": None,
        "slo_percentile": "p90",
        "cost": None,
        "currency": "",
    }
    config = probing.bench_config(**common, api=None, **rest)  # type: ignore[arg-type]
    assert (config.api, config.dialect) == ("completions", "openai")
    with pytest.raises(InputError, match="not a route of this stack's engine"):
        probing.bench_config(**common, api="generate", **rest)  # type: ignore[arg-type]


def spec_for(root: Path, engine: str) -> spec.DeploymentSpec:
    return spec.parse(f"name: t\nengine: {engine}\nstack_dir: {root / 'stack'}\n")
