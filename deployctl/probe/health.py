"""`deployctl health`: /health, the model the server reports against the plan, one short streamed generation.

Each engine's routes: TGI's /info and /generate_stream, or vLLM's /v1/models and /v1/completions.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from deployctl.planner.types import Plan
from deployctl.probe.dialect import Detection, model_info
from deployctl.probe.http import check_url, request

Dialect = Literal["tgi", "openai"]
# Exit codes: 5 is "not running" in the CLI's table, apart from 2 (bad input) so a cron job can tell them apart.
HEALTHY, DEGRADED, DOWN = 0, 1, 5
PROMPT = "Reply with one short sentence: is the service up?"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class HealthReport:
    endpoint: str
    status: Literal["healthy", "degraded", "down"]
    checks: list[Check] = field(default_factory=list)
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    tokens: int = 0

    @property
    def exit_code(self) -> int:
        return {"healthy": HEALTHY, "degraded": DEGRADED, "down": DOWN}[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


@dataclass(frozen=True)
class Expected:
    """What the server should say about its model (TGI's /info, vLLM's /v1/models card), from the plan."""

    fields: dict[str, Any]

    @classmethod
    def from_plan(cls, plan: Plan, dialect: Dialect = "tgi") -> Expected:
        limits = plan.limits
        if dialect == "openai":
            return cls({"id": plan.served_name, "max_model_len": limits.max_total_tokens})
        return cls(
            {
                "model_id": plan.model_id,
                "max_input_tokens": limits.max_input_tokens,
                "max_total_tokens": limits.max_total_tokens,
                "max_concurrent_requests": limits.max_concurrent_requests,
            }
        )


def _info_check(info: dict[str, Any], expected: Expected | None) -> Check:
    name = info.get("model_id") or info.get("id")
    if expected is None:
        return Check("info", True, f"model {name} (no plan to compare with)")
    diffs = [
        f"{key} {info.get(key)!r} != plan {value!r}" for key, value in expected.fields.items() if info.get(key) != value
    ]
    if diffs:
        return Check("info", False, "differs from the plan: " + "; ".join(diffs))
    return Check("info", True, "matches the plan (" + ", ".join(f"{k} {v}" for k, v in expected.fields.items()) + ")")


def _error_text(body: bytes) -> str:
    """Give the message of an error body in either dialect (or FastAPI's), without trusting its shape."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # OpenAI's envelope (vLLM)
            error = error.get("message")
        message = error if isinstance(error, str) else data.get("detail")  # TGI's, else FastAPI's
        if isinstance(message, str) and message:
            return message[:200]
    text = body.decode("utf-8", "replace").strip()
    return text.splitlines()[0][:200] if text else "(empty body)"


def _stream_request(endpoint: str, dialect: Dialect, max_tokens: int) -> tuple[str, dict[str, Any]]:
    if dialect == "openai":
        body: dict[str, Any] = {
            "prompt": PROMPT,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return f"{endpoint}/v1/completions", body
    return f"{endpoint}/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": max_tokens}}


def _event_tokens(event: Any, dialect: Dialect) -> tuple[int, int | None]:
    """Give (visible tokens in this event, the server's count of generated tokens if it says one)."""
    if not isinstance(event, dict):
        raise RuntimeError(f"the stream sent {type(event).__name__}, not an event object")
    if "error" in event:
        raise RuntimeError(_error_text(json.dumps(event).encode()))
    if dialect == "openai":
        usage, choices = event.get("usage"), event.get("choices")
        if isinstance(usage, dict) and not choices:
            count = usage.get("completion_tokens")
            return 0, count if isinstance(count, int) else None
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
        return (1 if first.get("text") else 0), None
    token = event.get("token")
    return (0 if not isinstance(token, dict) or token.get("special") else 1), None


def _generation(
    endpoint: str, dialect: Dialect, api_key: str | None, timeout: float, max_tokens: int
) -> tuple[float, float | None, int]:
    """Give (time to first token in ms, tokens/s after it, tokens) of one streamed generation.

    TGI's /generate_stream or vLLM's /v1/completions; an HTTP error becomes an HTTPError whose reason is
    the body's message, read without assuming the body is the dialect's own.
    """
    url, body = _stream_request(endpoint, dialect, max_tokens)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    start = time.perf_counter()
    first = last = None
    chunks, counted = 0, None
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise urllib.error.HTTPError(url, exc.code, _error_text(exc.read(65536)), exc.headers, None) from None
    with resp:
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                event = json.loads(data)
            except (ValueError, RecursionError):
                raise RuntimeError(f"the stream sent a line that is not JSON: {data[:80]!r}") from None
            visible, total = _event_tokens(event, dialect)
            counted = total if total is not None else counted
            if not visible:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += visible
    if first is None or last is None:
        raise RuntimeError("the stream ended without a token")
    n = counted if counted is not None else chunks
    rate = (n - 1) / (last - first) if n > 1 and last > first else None
    return (first - start) * 1000, rate, n


def check(
    endpoint: str,
    expected: Expected | None = None,
    api_key: str | None = None,
    max_ttft_ms: float = 2000.0,
    timeout: float = 30.0,
    max_new_tokens: int = 16,
    dialect: Dialect | Detection = "tgi",
) -> HealthReport:
    """Give the endpoint's health: down if /health fails, degraded if /info or speed disappoint.

    `dialect` may be what probe/dialect.py found: one that found none makes the endpoint down.
    """
    endpoint = check_url(endpoint, "--endpoint").rstrip("/")
    report = HealthReport(endpoint=endpoint, status="healthy")
    status, _ = request(f"{endpoint}/health", min(timeout, 5.0))
    if status != 200:
        detail = "nothing answers" if status is None else f"/health answered {status} (loading or broken)"
        report.checks.append(Check("health", False, detail))
        report.status = "down"
        return report
    report.checks.append(Check("health", True, "/health answered 200"))
    if isinstance(dialect, Detection):
        if dialect.dialect is None:
            report.checks.append(Check("engine", False, f"{dialect.why}: pass --engine tgi or --engine vllm"))
            report.status = "down"
            return report
        dialect = dialect.dialect
    status, info = model_info(endpoint, dialect, api_key, timeout)
    if not isinstance(info, dict):
        path = "/v1/models" if dialect == "openai" else "/info"
        hint = ": pass the right API key (--api-key-env)" if status == 401 else ""
        report.checks.append(Check("info", False, f"{path} answered {status} without model information{hint}"))
        report.status = "degraded"
    else:
        c = _info_check(info, expected)
        report.checks.append(c)
        if not c.ok:
            report.status = "degraded"
    try:
        ttft, rate, n = _generation(endpoint, dialect, api_key, timeout, max_new_tokens)
    except (
        OSError,
        RuntimeError,
        http.client.HTTPException,
    ) as exc:  # urllib's are OSErrors; a bad stream, RuntimeError
        if isinstance(exc, urllib.error.HTTPError):
            auth = " Unauthorized: pass the right API key (--api-key-env)" if exc.code == 401 else ""
            detail = f"{exc.code}{auth or ': ' + str(exc.reason)}"
        else:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            detail = f"{type(exc).__name__}: {str(reason).splitlines()[0][:200] if str(reason) else 'no detail'}"
        report.checks.append(Check("generate", False, detail))
        report.status = "down"
        return report
    report.ttft_ms, report.tokens_per_s, report.tokens = round(ttft, 1), rate and round(rate, 1), n
    speed = f"first token {ttft:.0f} ms, {rate:.1f} tokens/s" if rate else f"first token {ttft:.0f} ms"
    if ttft > max_ttft_ms:
        report.checks.append(Check("generate", False, f"{speed}: slower than {max_ttft_ms:.0f} ms"))
        report.status = "degraded"
    else:
        report.checks.append(Check("generate", True, f"{speed}, {n} tokens"))
    return report
