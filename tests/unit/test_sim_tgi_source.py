"""The simulator's TGI dialect answers as TGI v3.3.4's source says TGI answers (no TGI binary runs here).

Each case names the source it is read from (huggingface/text-generation-inference at tag v3.3.4, and
axum 0.7.9 / axum-core 0.4.5, the versions its Cargo.lock pins). Where the simulator is stricter than
TGI on purpose (the API key on every non-probe route, compared exactly), the case says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from helpers import simserver

from deployctl.sim import latency
from deployctl.sim.config import SimConfig

FAST = latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e7, itl_ms=0.5, itl_per_stream_ms=0)
KEY = "tgi-source-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    method: str
    path: str
    body: Any = None  # JSON-able, or bytes as they are
    headers: dict[str, str] | None = None
    status: int = 200
    content_type: str = "application/json"
    keys: frozenset[str] = frozenset()  # top-level keys the JSON answer has (all of them)
    text: str = ""  # what a plain-text answer starts with


GEN = {"inputs": "What is deep learning?", "parameters": {"max_new_tokens": 3}}
CASES = [
    Case("health", "router/src/server.rs health: Ok(()) -> 200, empty", "GET", "/health", content_type=""),
    Case("GET / is health", 'server.rs info_routes .route("/", get(health))', "GET", "/", content_type=""),
    Case("ping", 'server.rs info_routes .route("/ping", get(health))', "GET", "/ping", content_type=""),
    Case(
        "info",
        "router/src/lib.rs struct Info",
        "GET",
        "/info",
        keys=frozenset(
            [
                "model_id",
                "model_sha",
                "model_pipeline_tag",
                "max_concurrent_requests",
                "max_best_of",
                "max_stop_sequences",
                "max_input_tokens",
                "max_total_tokens",
                "validation_workers",
                "max_client_batch_size",
                "router",
                "version",
                "sha",
                "docker_label",
            ]
        ),
    ),
    Case(
        "generate",
        "lib.rs GenerateResponse",
        "POST",
        "/generate",
        GEN,
        AUTH,
        keys=frozenset({"generated_text", "details"}),
    ),
    Case("compat / answers a list", "server.rs compat_generate", "POST", "/", GEN, AUTH, keys=frozenset()),
    Case(
        "vertex",
        "router/src/vertex.rs VertexResponse {predictions}",
        "POST",
        "/vertex",
        {"instances": [{"inputs": "Hi", "parameters": {"max_new_tokens": 2}}]},
        AUTH,
        keys=frozenset({"predictions"}),
    ),
    Case(
        "vertex without instances",
        "vertex.rs: an empty list is 422 Input validation error",
        "POST",
        "/vertex",
        {"instances": []},
        AUTH,
        status=422,
        keys=frozenset({"error", "error_type"}),
    ),
    Case(
        "validation error",
        "router/src/validation.rs: max_new_tokens 0 -> 422 ErrorResponse",
        "POST",
        "/generate",
        {"inputs": "Hi", "parameters": {"max_new_tokens": 0}},
        AUTH,
        status=422,
        keys=frozenset({"error", "error_type"}),
    ),
    Case(
        "not JSON",
        "axum 0.7.9 JsonRejection::JsonSyntaxError: 400 text/plain",
        "POST",
        "/generate",
        b"{not json",
        {**AUTH, "Content-Type": "application/json"},
        status=400,
        content_type="text/plain",
        text="Failed to parse the request body as JSON",
    ),
    Case(
        "wrong type",
        "axum 0.7.9 JsonRejection::JsonDataError: 422 text/plain (serde: max_new_tokens is a u32)",
        "POST",
        "/generate",
        {"inputs": "Hi", "parameters": {"max_new_tokens": True}},
        AUTH,
        status=422,
        content_type="text/plain",
        text="Failed to deserialize the JSON body into the target type",
    ),
    Case(
        "chat content part of no variant",
        "lib.rs MessageContent (untagged enum): serde's 422 text/plain",
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"text": 5}]}]},
        AUTH,
        status=422,
        content_type="text/plain",
        text="Failed to deserialize the JSON body into the target type",
    ),
    Case(
        "not JSON content type",
        "axum 0.7.9 JsonRejection::MissingJsonContentType: 415 text/plain",
        "POST",
        "/generate",
        b'{"inputs": "Hi"}',
        {**AUTH, "Content-Type": "text/plain"},
        status=415,
        content_type="text/plain",
        text="Expected request with `Content-Type: application/json`",
    ),
    Case(
        "no key",
        "server.rs auth layer on base_routes: StatusCode::UNAUTHORIZED, empty body",
        "POST",
        "/generate",
        GEN,
        status=401,
        content_type="",
    ),
    Case(
        "key in another case",
        "server.rs compares lower-cased; the simulator compares exactly (stricter on purpose, docs/security.md)",
        "POST",
        "/generate",
        GEN,
        {"Authorization": f"Bearer {KEY.upper()}"},
        status=401,
        content_type="",
    ),
    Case("probe without key", "server.rs info_routes carry no auth layer", "GET", "/info", keys=frozenset()),
]


@pytest.fixture(scope="module")
def tgi() -> Iterator[str]:
    cfg = SimConfig(load_seconds=0, latency=FAST, api_key=KEY, max_input_tokens=200, max_total_tokens=256)
    with simserver.running(cfg) as url:
        yield url


def test_the_tgi_dialect_answers_as_tgis_source_says(tgi: str, capsys: pytest.CaptureFixture[str]) -> None:
    diffs, compared = [], 0
    for case in CASES:
        data = case.body if isinstance(case.body, bytes) or case.body is None else json.dumps(case.body).encode()
        headers = {"Content-Type": "application/json", **(case.headers or {})}
        r = requests.request(case.method, f"{tgi}{case.path}", data=data, headers=headers, timeout=30)
        kind = r.headers.get("Content-Type", "").split(";")[0] if r.content else ""
        seen = [("status", case.status, r.status_code), ("content type", case.content_type, kind)]
        if case.keys:
            seen.append(("keys", sorted(case.keys), sorted(r.json()) if kind == "application/json" else None))
        if case.text:
            seen.append(("text", case.text, r.text[: len(case.text)]))
        for aspect, want, got in seen:
            compared += 1
            if want != got:
                diffs.append(f"{case.name} ({case.source}): {aspect} {want!r} != {got!r}")
    with capsys.disabled():
        print(f"\nTGI v3.3.4 source conformance: {compared} behaviours of {len(CASES)} requests compared")
    assert not diffs, "\n".join(diffs)
