from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from helpers import openapi, simserver
from text_generation import AsyncClient, Client
from text_generation.errors import ValidationError

from deployctl.sim import latency
from deployctl.sim.config import SimConfig, from_args


@pytest.fixture(scope="module")
def sim() -> Iterator[str]:
    cfg = SimConfig(
        model_id="/data/models/test",
        max_input_tokens=100,
        max_total_tokens=160,
        load_seconds=0,
        latency=latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e6, itl_ms=1, itl_per_stream_ms=0),
    )
    with simserver.running(cfg) as url:
        yield url


def events(resp: requests.Response) -> list[str]:
    return [line[5:] for line in resp.text.splitlines() if line.startswith("data:")]


def test_client_generate_sync_and_async(sim: str) -> None:
    r = Client(sim).generate("Hello there, simulator", max_new_tokens=5, seed=7)
    assert r.details.generated_tokens == 5 and r.details.finish_reason == "length"
    again = asyncio.run(AsyncClient(sim).generate("Hello there, simulator", max_new_tokens=5, seed=7))
    assert again.generated_text == r.generated_text  # deterministic text


def test_client_stream_sync_and_async(sim: str) -> None:
    tokens = list(Client(sim).generate_stream("Tell me a story", max_new_tokens=6))
    assert len(tokens) == 6
    assert tokens[-1].details is not None and tokens[-1].details.generated_tokens == 6
    assert tokens[-1].generated_text == "".join(t.token.text for t in tokens)

    async def collect() -> list[object]:
        return [t async for t in AsyncClient(sim).generate_stream("Tell me a story", max_new_tokens=6)]

    assert [t.token.text for t in asyncio.run(collect())] == [t.token.text for t in tokens]  # type: ignore[attr-defined]


def test_model_stops_at_its_own_eos_without_max_new_tokens(sim: str) -> None:
    # (TGI's client always sends max_new_tokens=20, so ask directly.)
    details = requests.post(f"{sim}/generate", json={"inputs": "Hi"}).json()["details"]
    assert details["finish_reason"] == "eos_token" and details["tokens"][-1]["special"]
    assert 16 <= details["generated_tokens"] <= 64


def test_client_chat_sync(sim: str) -> None:
    reply = Client(sim).chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert reply.choices[0].finish_reason == "length"
    assert len(reply.choices[0].message.content.split()) == 4


def test_client_chat_stream_yields_every_chunk(sim: str) -> None:
    chunks = []
    # text-generation 0.7's chat stream does json.loads on TGI's closing "data:[DONE]", as it does
    # against TGI itself; every chunk before it arrives.
    with pytest.raises(json.JSONDecodeError):
        for chunk in Client(sim).chat([{"role": "user", "content": "hi"}], max_tokens=3, stream=True):
            chunks.append(chunk)
    assert len(chunks) == 3 and chunks[-1].choices[0].finish_reason == "length"


def test_validation_errors_are_tgi_shaped(sim: str) -> None:
    with pytest.raises(ValidationError, match="must have less than 100 tokens"):
        Client(sim).generate("word " * 101, max_new_tokens=1)
    with pytest.raises(ValidationError, match=r"must be <= 160"):
        Client(sim).generate("word " * 50, max_new_tokens=150)
    r = requests.post(f"{sim}/generate", json={"inputs": "x", "parameters": {"top_p": 1.5}})
    assert r.status_code == 422 and r.json()["error_type"] == "validation"
    openapi.validate(r.json(), "ErrorResponse")
    # A body that is not JSON: axum's Json extractor answers 400 in plain text (TGI's router; see sim/server.py).
    r = requests.post(f"{sim}/generate", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.text.startswith("Failed to parse the request body as JSON")


def test_every_endpoint_matches_the_openapi_spec(sim: str) -> None:
    body = {"inputs": "What is deep learning?", "parameters": {"max_new_tokens": 3, "details": True}}
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    checks = [
        ("get", "/info", None, 200, "application/json"),
        ("get", "/v1/models", None, 200, "application/json"),
        ("post", "/generate", body, 200, "application/json"),
        ("post", "/", body, 200, "application/json"),
        ("post", "/invocations", body, 200, "application/json"),
        ("post", "/v1/chat/completions", chat, 200, "application/json"),
        ("post", "/tokenize", {"inputs": "Hello, world"}, 200, "application/json"),
        ("post", "/chat_tokenize", chat, 200, "application/json"),
    ]
    for method, path, payload, status, ctype in checks:
        r = requests.request(method, sim + path, json=payload, timeout=10)
        assert r.status_code == status, (path, r.text)
        schema = openapi.response_schema(path, method, status, ctype)
        assert schema is not None, path
        openapi.validate(r.json(), schema)
    r = requests.post(f"{sim}/v1/completions", json={"prompt": "Once", "max_tokens": 3})
    openapi.validate(r.json(), "CompletionFinal")
    assert requests.get(f"{sim}/health").status_code == 200
    # Streams: one event per token, each a StreamResponse; the last carries generated_text and details.
    r = requests.post(f"{sim}/generate_stream", json=body)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    data = [json.loads(e) for e in events(r)]
    assert len(data) == 3
    for event in data:
        openapi.validate(event, "StreamResponse")
    assert data[-1]["generated_text"] and data[-1]["details"]["finish_reason"] == "length"
    r = requests.post(f"{sim}/v1/chat/completions", json={**chat, "stream": True})
    raw = events(r)
    assert raw[-1] == "[DONE]"
    for event in raw[:-1]:
        openapi.validate(json.loads(event), "ChatCompletionChunk")
    r = requests.post(f"{sim}/v1/completions", json={"prompt": "Once", "max_tokens": 2, "stream": True})
    for event in events(r)[:-1]:
        openapi.validate(json.loads(event), "Chunk")


def test_metrics_use_tgi_names(sim: str) -> None:
    Client(sim).generate("count me", max_new_tokens=2)
    text = requests.get(f"{sim}/metrics").text
    for name in (
        "tgi_request_count",
        "tgi_request_success",
        "tgi_queue_size",
        "tgi_batch_current_size",
        "tgi_request_duration_bucket",
        "tgi_request_queue_duration_count",
    ):
        assert name in text
    count = next(line for line in text.splitlines() if line.startswith("tgi_request_count "))
    assert int(count.split()[1]) >= 1


def test_health_is_503_while_loading_then_200() -> None:
    loading = SimConfig(load_seconds=3600, latency=latency.LatencyModel(1, 1e6, 1, 0))
    with simserver.running(loading) as url:
        r = requests.get(f"{url}/health")
        assert r.status_code == 503
        openapi.validate(r.json(), "ErrorResponse")
    loaded_soon = SimConfig(load_seconds=0.2, latency=latency.LatencyModel(1, 1e6, 1, 0))
    with simserver.running(loaded_soon) as url:
        # the event itself, whenever it comes: no race with a sleep
        assert _eventually(lambda: requests.get(f"{url}/health").status_code == 200)


def test_the_api_key_guards_generation() -> None:
    cfg = SimConfig(load_seconds=0, api_key="sekret", latency=latency.LatencyModel(1, 1e6, 1, 0))
    with simserver.running(cfg) as url:
        assert requests.get(f"{url}/health").status_code == 200
        assert requests.get(f"{url}/info").status_code == 200  # TGI leaves /info open
        assert requests.post(f"{url}/generate", json={"inputs": "x"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.post(f"{url}/generate", json={"inputs": "x"}, headers=wrong).status_code == 401
        ok = Client(url, headers={"Authorization": "Bearer sekret"}).generate("x", max_new_tokens=1)
        assert ok.details.generated_tokens == 1


def test_more_than_max_concurrent_requests_get_429() -> None:
    # A token a second: two streams, once their first token has come, are in flight for a minute, so the
    # next two requests meet a full engine whatever the test host's load (no race with the clock).
    slow = latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e6, itl_ms=1000, itl_per_stream_ms=0)
    cfg = SimConfig(load_seconds=0, max_concurrent_requests=2, latency=slow)
    body = {"inputs": "x", "parameters": {"max_new_tokens": 60}}
    with simserver.running(cfg) as url:
        streams = [requests.post(f"{url}/generate_stream", json=body, stream=True, timeout=30) for _ in range(2)]
        try:
            for stream in streams:
                assert stream.status_code == 200
                assert next(line for line in stream.iter_lines() if line).startswith(b"data:")  # admitted
            for _ in range(2):
                refused = requests.post(f"{url}/generate", json=body, timeout=30)
                assert refused.status_code == 429 and refused.json()["error_type"] == "overloaded"
        finally:
            for stream in streams:
                stream.close()
        # Their clients gone, the engine lets them go at their next token: new requests are admitted again.
        one = {"inputs": "x", "parameters": {"max_new_tokens": 1}}
        assert _eventually(lambda: requests.post(f"{url}/generate", json=one, timeout=30).status_code == 200)


def _eventually(check: Callable[[], bool], bound_s: float = 60) -> bool:
    """Give whether `check` comes true before `bound_s` (a bound for a broken server, not a timing)."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_config_reads_tgi_launcher_flags_and_env() -> None:
    cfg = from_args(
        [
            "--model-id",
            "/data/models/x",
            "--num-shard",
            "2",
            "--quantize",
            "gptq",
            "--max-total-tokens=2048",
            "--max-input-tokens",
            "1024",
            "--trust-remote-code",
        ],
        {"API_KEY": "k", "PORT": "80", "SIM_ITL_MS": "25", "SIM_CRASH_AFTER": "3"},
    )
    assert (cfg.model_id, cfg.max_total_tokens, cfg.max_input_tokens, cfg.api_key, cfg.port) == (
        "/data/models/x",
        2048,
        1024,
        "k",
        80,
    )
    assert cfg.latency.itl_ms == 25 and cfg.crash_after == 3
