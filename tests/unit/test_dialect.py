"""health and bench with only --endpoint: the endpoint says which engine it is (or --engine does), and no
body of the wrong shape ever becomes a traceback or a KeyError."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import clirun, simserver
from hypothesis import given, settings
from hypothesis import strategies as st

from deployctl.engines import dialects
from deployctl.engines.dialects import Api
from deployctl.probe import dialect
from deployctl.sim import latency
from deployctl.sim.config import SimConfig, from_args

FAST = latency.LatencyModel(ttft_base_ms=1, prefill_tokens_per_s=1e7, itl_ms=0.5, itl_per_stream_ms=0)
KEY_ENV = "DIALECT_TEST_KEY"


def vllm_cfg(key: str | None = None) -> SimConfig:
    env = {"SIM_ENGINE": "vllm", **({"VLLM_API_KEY": key} if key else {})}
    cfg = from_args(["/m", "--served-model-name", "m", "--max-model-len", "512"], env)
    cfg.load_seconds, cfg.latency = 0, FAST
    return cfg


@pytest.fixture(scope="module")
def tgi_url() -> Iterator[str]:
    with simserver.running(SimConfig(load_seconds=0, latency=FAST)) as url:
        yield url


@pytest.fixture(scope="module")
def vllm_url() -> Iterator[str]:
    with simserver.running(vllm_cfg()) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_vllm_url() -> Iterator[str]:
    with simserver.running(vllm_cfg("k3y")) as url:
        yield url


class FastApiLike(BaseHTTPRequestHandler):
    """A server that is neither engine: /health 200, everything else FastAPI's 404 {"detail": "Not Found"}."""

    def _answer(self) -> None:
        status, body = (200, b"") if self.path == "/health" else (404, b'{"detail":"Not Found"}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def other_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FastApiLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_each_engine_is_told_apart_by_its_own_routes(tgi_url: str, vllm_url: str, keyed_vllm_url: str) -> None:
    assert dialect.detect(tgi_url).dialect is dialects.TGI
    assert dialect.detect(vllm_url).dialect is dialects.OPENAI
    assert dialect.detect(keyed_vllm_url).dialect is dialects.OPENAI  # its 401 says it is vLLM, without the key


def test_a_server_that_is_neither_says_so(other_url: str) -> None:
    found = dialect.detect(other_url)
    assert found.dialect is None and "none of the APIs deployctl knows" in found.why
    assert "TGI's API (GET /info: 404)" in found.why and "the OpenAI API (GET /v1/models: 404)" in found.why
    nothing = dialect.detect("http://127.0.0.1:9")
    assert nothing.dialect is None and nothing.why == "nothing answers at http://127.0.0.1:9"


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = clirun.invoke_in(cwd, args, env)
    return result.exit_code, result.stdout, result.stderr


def test_health_with_only_the_endpoint_of_vllm_is_healthy(vllm_url: str, tmp_path: Path) -> None:
    code, out, err = run(["health", "--endpoint", vllm_url, "--json"], tmp_path)
    report = json.loads(out)
    assert code == 0 and report["status"] == "healthy", (out, err)
    assert "KeyError" not in out + err


def test_health_with_the_key_of_a_keyed_vllm(keyed_vllm_url: str, tmp_path: Path) -> None:
    code, out, _ = run(["health", "--endpoint", keyed_vllm_url, "--api-key-env", KEY_ENV], tmp_path, {KEY_ENV: "k3y"})
    assert code == 0, out
    code, out, _ = run(["health", "--endpoint", keyed_vllm_url, "--json"], tmp_path)
    report = json.loads(out)
    assert code == 5 and "401" in report["checks"][-1]["detail"] and "--api-key-env" in report["checks"][-1]["detail"]


def test_health_of_a_server_that_is_neither_is_down_with_one_reason(other_url: str, tmp_path: Path) -> None:
    code, out, err = run(["health", "--endpoint", other_url, "--json"], tmp_path)
    report = json.loads(out)
    assert code == 5 and report["status"] == "down"
    assert report["checks"][-1]["name"] == "engine" and "--engine" in report["checks"][-1]["detail"]
    assert "Traceback" not in out + err and "KeyError" not in out + err


def test_engine_flag_is_believed_and_a_foreign_body_is_read_safely(other_url: str, tmp_path: Path) -> None:
    # --engine tgi against a FastAPI server: /generate_stream answers {"detail": ...}, which must not be read as TGI's.
    code, out, err = run(["health", "--endpoint", other_url, "--engine", "tgi", "--json"], tmp_path)
    report = json.loads(out)
    assert code == 5 and "KeyError" not in out + err
    assert report["checks"][-1] == {"name": "generate", "ok": False, "detail": "404: Not Found"}


def test_bench_with_only_the_endpoint_of_vllm(vllm_url: str, tmp_path: Path) -> None:
    args = ["bench", "run", "--endpoint", vllm_url, "--concurrency", "1,2", "--requests", "4", "--warmup", "0"]
    code, out, err = run(
        [*args, "--prompt-tokens", "8", "--output-tokens", "4", "-o", str(tmp_path / "o"), "--json"], tmp_path
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["config"]["dialect"] == "openai" and all(lv["completed"] == 4 for lv in result["levels"])


def test_bench_of_a_server_that_is_neither_exits_5_with_the_hint(other_url: str, tmp_path: Path) -> None:
    code, out, err = run(
        ["bench", "run", "--endpoint", other_url, "--concurrency", "1", "-o", str(tmp_path / "o")], tmp_path
    )
    assert code == 5 and "--engine" in err and "Traceback" not in out + err


def test_error_text_takes_any_dialects_body() -> None:
    assert dialects.error_text(b'{"detail": "Not Found"}') == "Not Found"
    assert (
        dialects.error_text(b'{"error": "Input validation error", "error_type": "validation"}')
        == "Input validation error"
    )
    assert dialects.error_text(b'{"error": {"message": "bad", "type": "BadRequestError"}}') == "bad"
    assert dialects.error_text(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert dialects.error_text(b'{"error": 5}') == '{"error": 5}'
    assert dialects.error_text(b"") == "(empty body)"


@pytest.mark.parametrize(
    ("api", "event", "token"),
    [
        ("completions", {"choices": [{"text": "hi"}]}, True),
        ("completions", {"choices": [{"text": ""}]}, False),
        ("completions", {"choices": "hi"}, False),
        ("completions", {"choices": [5]}, False),
        ("completions", {"choices": [{"text": {"t": 1}}]}, False),
        ("chat", {"choices": [{"delta": {"content": "hi"}}]}, True),
        ("chat", {"choices": [{"delta": ["hi"]}]}, False),
        ("chat", {"choices": [{"delta": {"content": 7}}]}, False),
        ("generate", {"token": {"text": "hi", "special": False}}, True),
        ("generate", {"token": {"text": "</s>", "special": True}}, False),
        ("generate", {"token": "hi"}, False),
        ("generate", {}, False),
    ],
)
def test_only_an_event_of_the_dialects_shape_carries_a_token(api: Api, event: dict[str, Any], token: bool) -> None:
    speaks = dialects.TGI if api == "generate" else dialects.OPENAI
    assert speaks.read_chunk(api, event).token is token


def test_a_stream_error_gives_the_servers_words_in_any_shape() -> None:
    tgi = dialects.TGI.read_chunk("generate", {"error": "Request failed during generation", "error_type": "generation"})
    assert (tgi.error, tgi.detail) == ("generation", "Request failed during generation")
    vllm = dialects.OPENAI.read_chunk("completions", {"error": {"message": "boom", "type": "InternalServerError"}})
    assert (vllm.error, vllm.detail) == ("InternalServerError", "boom")
    odd = dialects.OPENAI.read_chunk("completions", {"error": 5})
    assert (odd.error, odd.detail) == ("stream_error", '{"error": 5}')


# Values of every JSON type where the dialects expect objects, lists and strings, under the keys they read.
_FIELDS = ["choices", "text", "delta", "content", "token", "special", "usage", "completion_tokens", "error", "message"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, derandomize=True)
@given(st.dictionaries(st.sampled_from([*_FIELDS, "error_type", "detail"]), _JSON, max_size=3))
def test_a_stream_event_of_any_shape_is_read_without_an_exception(event: dict[str, Any]) -> None:
    for speaks in dialects.known():
        for api in speaks.apis:
            chunk = speaks.read_chunk(api, event)
            assert chunk.usage is None or isinstance(chunk.usage, int)
            assert isinstance(chunk.token, bool) and isinstance(chunk.detail, str)
