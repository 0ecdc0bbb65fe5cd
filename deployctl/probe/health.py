"""`deployctl health`: /health, the model the server reports against the plan, one short streamed generation.

The routes are the engine's dialect's (engines/dialects.py): TGI's /info and /generate_stream, or the
OpenAI API's /v1/models and /v1/completions.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from deployctl.engines.dialects import TGI, Dialect, error_text
from deployctl.http import check_url, request
from deployctl.plan import Plan
from deployctl.probe.dialect import ENGINE_HINT, Detection, model_info
from deployctl.probe.sse import DONE, parse_sse_line

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
    # What the alerts watch, from the engine's /metrics (deployctl/monitoring/facts.py), when a plan says how to judge it.
    metrics: dict[str, Any] | None = None

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
    def from_plan(cls, plan: Plan, dialect: Dialect = TGI) -> Expected:
        return cls(dialect.expected_card(plan))


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


def _generation(
    endpoint: str, dialect: Dialect, api_key: str | None, timeout: float, max_tokens: int
) -> tuple[float, float | None, int]:
    """Give (time to first token in ms, tokens/s after it, tokens) of one streamed generation.

    The dialect's default route (TGI's /generate_stream, the OpenAI API's /v1/completions); an HTTP error
    becomes an HTTPError whose reason is the body's message, read without assuming the body is the
    dialect's own (dialects.error_text).
    """
    api = dialect.apis[0]
    path, body = dialect.stream_request(api, PROMPT, max_tokens)
    url = f"{endpoint}{path}"
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    start = time.perf_counter()
    first = last = None
    chunks, usage = 0, None
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise urllib.error.HTTPError(url, exc.code, error_text(exc.read(65536)), exc.headers, None) from None
    with resp:
        for raw in resp:
            event = parse_sse_line(raw)
            if event is None:
                continue
            if event is DONE:
                break
            chunk = dialect.read_chunk(api, event)
            if chunk.error is not None:
                raise RuntimeError(chunk.detail)
            if chunk.usage is not None:
                usage = chunk.usage
                continue
            if not chunk.token:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
    if first is None or last is None:
        raise RuntimeError("the stream ended without a token")
    n = usage if isinstance(usage, int) else chunks
    rate = (n - 1) / (last - first) if n > 1 and last > first else None
    return (first - start) * 1000, rate, n


def check(
    endpoint: str,
    expected: Expected | None = None,
    api_key: str | None = None,
    max_ttft_ms: float = 2000.0,
    timeout: float = 30.0,
    max_new_tokens: int = 16,
    dialect: Dialect | Detection = TGI,
) -> HealthReport:
    """Give the endpoint's health: down if /health fails, degraded if /info or speed disappoint.

    `dialect` may be what probe/dialect.py found: one that found none makes the endpoint down.
    """
    endpoint = check_url(endpoint, "--endpoint").rstrip("/")
    report = HealthReport(endpoint=endpoint, status="healthy")
    found = dialect if isinstance(dialect, Detection) else Detection(dialect, "given")
    # Before the dialect is known, the path every dialect answers on (Dialect.health_path).
    health_path = found.dialect.health_path if found.dialect else Dialect.health_path
    status, _ = request(f"{endpoint}{health_path}", min(timeout, 5.0))
    if status != 200:
        detail = "nothing answers" if status is None else f"{health_path} answered {status} (loading or broken)"
        report.checks.append(Check("health", False, detail))
        report.status = "down"
        return report
    report.checks.append(Check("health", True, f"{health_path} answered 200"))
    speaks = found.dialect
    if speaks is None:
        report.checks.append(Check("engine", False, f"{found.why}: {ENGINE_HINT}"))
        report.status = "down"
        return report
    status, info = model_info(endpoint, speaks, api_key, timeout)
    if not isinstance(info, dict):
        hint = ": pass the right API key (--api-key-env)" if status == 401 else ""
        path = speaks.model_info_path
        report.checks.append(Check("info", False, f"{path} answered {status} without model information{hint}"))
        report.status = "degraded"
    else:
        c = _info_check(info, expected)
        report.checks.append(c)
        if not c.ok:
            report.status = "degraded"
    try:
        ttft, rate, n = _generation(endpoint, speaks, api_key, timeout, max_new_tokens)
    except (OSError, ValueError, RuntimeError, http.client.HTTPException) as exc:
        # urllib's failures are OSErrors (HTTPError among them), a stream that is not the engine's a
        # ValueError (parse_sse_line) or RuntimeError, a connection cut mid-answer an HTTPException.
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
