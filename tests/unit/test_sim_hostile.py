"""Hostile requests to the simulator (issue #24's simulator cases): every malformed body is a 4xx, never a
500; slow senders are dropped; a huge tokenization does not stop /health from answering.

Both dialects: TGI's (answers a body it cannot read as axum does, 400/422 in plain text) and vLLM's
(as vLLM 0.32.0 answers, recorded in tests/data/vllm/recorded-0.32.0.json).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
import requests
from helpers import simserver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployctl.sim import latency, listen, server
from deployctl.sim.config import SimConfig, from_args

FAST = latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e7, itl_ms=0.5, itl_per_stream_ms=0)
JSON = {"Content-Type": "application/json"}


def vllm_config() -> SimConfig:
    cfg = from_args(["/m", "--served-model-name", "m", "--max-model-len", "64"], {"SIM_ENGINE": "vllm"})
    cfg.load_seconds, cfg.latency = 0, FAST
    return cfg


@pytest.fixture(scope="module")
def tgi() -> Iterator[str]:
    with simserver.running(SimConfig(load_seconds=0, latency=FAST, max_input_tokens=63, max_total_tokens=64)) as url:
        yield url


@pytest.fixture(scope="module")
def vllm() -> Iterator[str]:
    with simserver.running(vllm_config()) as url:
        yield url


SEED_5000 = b'{"inputs": "hi", "parameters": {"max_new_tokens": 2, "seed": ' + b"9" * 5000 + b"}}"
DEEP = b"[" * 100_000 + b"]" * 100_000
SURROGATE = b'{"inputs": "\\ud800", "parameters": {"max_new_tokens": 2}}'

# (route, body, status): what the TGI dialect answers to each of #24's cases.
TGI_CASES = {
    "5,000-digit seed": ("/generate", SEED_5000, 400),
    "JSON nested 100,000 deep": ("/generate", DEEP, 400),
    "lone surrogate in inputs": ("/generate", SURROGATE, 400),
    "chat content [{text: 5}]": (
        "/v1/chat/completions",
        json.dumps({"messages": [{"role": "user", "content": [{"text": 5}]}], "max_tokens": 2}).encode(),
        422,
    ),
    "max_new_tokens true": ("/generate", b'{"inputs": "hi", "parameters": {"max_new_tokens": true}}', 422),
    "a string stream_options": (
        "/v1/chat/completions",
        b'{"messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": "yes"}',
        422,
    ),
    "a body that is a list": ("/generate", b"[1, 2]", 422),
    "NaN": ("/generate", b'{"inputs": "hi", "parameters": {"temperature": NaN}}', 400),
    "not UTF-8": ("/generate", b'{"inputs": "\xff\xfe"}', 400),
}


@pytest.mark.parametrize("case", list(TGI_CASES))
def test_tgi_dialect_answers_each_malformed_body_with_one_4xx(tgi: str, case: str) -> None:
    path, body, status = TGI_CASES[case]
    r = requests.post(f"{tgi}{path}", data=body, headers=JSON, timeout=30)
    assert r.status_code == status, (case, r.status_code, r.text[:200])
    assert requests.get(f"{tgi}/health", timeout=5).status_code == 200


VLLM_CASES = {
    "5,000-digit seed": (b'{"prompt": "hi", "max_tokens": 2, "seed": ' + b"9" * 5000 + b"}", "There was an error"),
    "JSON nested 100,000 deep": (DEEP, "There was an error"),
    "lone surrogate in prompt": (b'{"prompt": "\\ud800", "max_tokens": 2}', "TextEncodeInput"),
    "a string stream_options": (b'{"prompt": "hi", "stream": true, "stream_options": "yes"}', "validation error"),
}


@pytest.mark.parametrize("case", list(VLLM_CASES))
def test_vllm_dialect_answers_each_malformed_body_with_400(vllm: str, case: str) -> None:
    body, said = VLLM_CASES[case]
    r = requests.post(f"{vllm}/v1/completions", data=body, headers=JSON, timeout=30)
    assert r.status_code == 400 and said in r.text, (case, r.status_code, r.text[:200])


def test_vllm_chat_content_part_with_a_number_is_400(vllm: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": 5}]}], "max_tokens": 2}
    r = requests.post(f"{vllm}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequestError"


def test_a_string_stream_options_is_refused_before_any_stream_starts(tgi: str, vllm: str) -> None:
    for url, path, body in (
        (tgi, "/v1/completions", {"prompt": "hi", "stream": True, "stream_options": "yes"}),
        (
            vllm,
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": "x"},
        ),
    ):
        r = requests.post(f"{url}{path}", json=body, timeout=30)
        assert r.status_code in (400, 422) and not r.headers["Content-Type"].startswith("text/event-stream")


def _slow_connection(url: str, first: bytes) -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=30)
    s.sendall(first)
    return s


def test_a_connection_that_never_finishes_its_headers_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deadline is shortened for the test; the outcome (the server closes the connection) is what is
    # asserted: without a deadline recv() would wait the whole 30 s and fail on its timeout.
    monkeypatch.setattr(listen, "HEADER_TIMEOUT_S", 0.2)
    with simserver.running(SimConfig(load_seconds=0, latency=FAST)) as url:
        slow = [_slow_connection(url, b"GET /health HTTP/1.1\r\nHost: x\r\n") for _ in range(50)]
        assert requests.get(f"{url}/health", timeout=10).status_code == 200  # the others still get answers
        for s in slow:
            with contextlib.suppress(ConnectionResetError):  # a reset: dropped just the same
                assert s.recv(1024) == b""  # closed by the server, no answer sent
            s.close()


def test_a_sender_of_one_byte_at_a_time_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listen, "HEADER_TIMEOUT_S", 0.2)
    with simserver.running(SimConfig(load_seconds=0, latency=FAST)) as url:
        s = _slow_connection(url, b"G")
        closed = threading.Event()
        s.settimeout(0.05)
        for byte in b"ET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
            try:
                s.sendall(bytes([byte]))
                if s.recv(1) == b"":
                    closed.set()
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed.set()
                break
        s.close()
        assert closed.is_set(), "the server kept a connection that never finished its headers"


def test_a_huge_tokenize_leaves_health_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tokenization is held inside the tokenizer until /health has answered: on the event loop that would
    # deadlock (and time out); in a worker thread /health answers while it waits.
    release, inside = threading.Event(), threading.Event()
    real = latency.tokenize

    def held(text: str) -> list[tuple[int, str, int, int]]:
        inside.set()
        assert release.wait(20), "never released"
        return real(text[:100])

    monkeypatch.setattr(latency, "tokenize", held)
    text = "word " * 360_000  # 1.8 MB
    assert len(text) > server.THREAD_ABOVE
    with simserver.running(SimConfig(load_seconds=0, latency=FAST)) as url:
        result: dict[str, int] = {}
        t = threading.Thread(
            target=lambda: result.setdefault(
                "status", requests.post(f"{url}/tokenize", json={"inputs": text}, timeout=60).status_code
            )
        )
        t.start()
        assert inside.wait(30)
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        release.set()
        t.join(60)
        assert result["status"] == 200


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["inputs", "parameters", "prompt", "messages", "max_tokens", "max_new_tokens", "stream", "stream_options"]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_body_gives_a_500(tgi: str, vllm: str, data: st.DataObject) -> None:
    url = data.draw(st.sampled_from([tgi, vllm]))
    path = data.draw(
        st.sampled_from(
            ["/generate", "/generate_stream", "/v1/completions", "/v1/chat/completions", "/", "/invocations"]
        )
    )
    if url == vllm and (path.startswith("/generate") or path == "/"):
        path = "/tokenize"
    body = data.draw(st.dictionaries(st.sampled_from(FIELDS), JSONISH, max_size=5))
    r = requests.post(f"{url}{path}", json=body, timeout=30)  # the whole answer is read: a broken stream raises
    assert r.status_code < 500, (path, body, r.status_code, r.text[:200])
