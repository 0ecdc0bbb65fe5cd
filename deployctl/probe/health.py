"""`deployctl health`: /health, the model the server reports against the plan, one short streamed generation.

Each engine's routes: TGI's /info and /generate_stream, or vLLM's /v1/models and /v1/completions.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from deployctl.planner.types import Plan
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


def _model_info(endpoint: str, dialect: Dialect, api_key: str | None, timeout: float) -> tuple[int | None, Any]:
    """Give (status, what the server says about its model): TGI's /info, or the first /v1/models card."""
    path = "/v1/models" if dialect == "openai" else "/info"
    status, body = request(f"{endpoint}{path}", min(timeout, 5.0), api_key=api_key if dialect == "openai" else None)
    try:
        data = json.loads(body) if status == 200 else None
    except ValueError:
        data = None
    if dialect == "openai" and isinstance(data, dict):
        cards = data.get("data")
        data = cards[0] if isinstance(cards, list) and cards and isinstance(cards[0], dict) else None
    return status, data


def _openai_generation(
    endpoint: str, api_key: str | None, timeout: float, max_tokens: int
) -> tuple[float, float | None, int]:
    """Give (time to first token in ms, tokens/s after it, tokens) of one streamed /v1/completions."""
    body = {
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    req = urllib.request.Request(f"{endpoint}/v1/completions", json.dumps(body).encode(), headers)
    start = time.perf_counter()
    first = last = None
    chunks, usage = 0, None
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(str(event["error"]))
            if event.get("usage") and not event.get("choices"):
                usage = event["usage"].get("completion_tokens")
                continue
            if not (event.get("choices") or [{}])[0].get("text"):
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


def _generation(
    endpoint: str, api_key: str | None, timeout: float, max_new_tokens: int
) -> tuple[float, float | None, int]:
    """Give (time to first token in ms, tokens/s after it, tokens) of one streamed generation."""
    from text_generation import Client

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    client = Client(endpoint, headers=headers, timeout=int(max(1, timeout)))
    start = time.perf_counter()
    first = last = None
    n = 0
    for response in client.generate_stream(PROMPT, max_new_tokens=max_new_tokens):
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        n += 0 if response.token.special else 1
    if first is None or last is None:
        raise RuntimeError("the stream ended without a token")
    rate = (n - 1) / (last - first) if n > 1 and last > first else None
    return (first - start) * 1000, rate, n


def check(
    endpoint: str,
    expected: Expected | None = None,
    api_key: str | None = None,
    max_ttft_ms: float = 2000.0,
    timeout: float = 30.0,
    max_new_tokens: int = 16,
    dialect: Dialect = "tgi",
) -> HealthReport:
    """Give the endpoint's health: down if /health fails, degraded if /info or speed disappoint."""
    endpoint = check_url(endpoint, "--endpoint").rstrip("/")
    report = HealthReport(endpoint=endpoint, status="healthy")
    status, _ = request(f"{endpoint}/health", min(timeout, 5.0))
    if status != 200:
        detail = "nothing answers" if status is None else f"/health answered {status} (loading or broken)"
        report.checks.append(Check("health", False, detail))
        report.status = "down"
        return report
    report.checks.append(Check("health", True, "/health answered 200"))
    status, info = _model_info(endpoint, dialect, api_key, timeout)
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
    generate = _openai_generation if dialect == "openai" else _generation
    try:
        ttft, rate, n = generate(endpoint, api_key, timeout, max_new_tokens)
    except Exception as exc:  # the clients raise many kinds; any of them means the model does not answer
        kind = type(exc).__name__
        text = str(exc).splitlines()[0][:200] if str(exc) else kind
        if dialect == "openai":
            unauthorized = isinstance(exc, urllib.error.HTTPError) and exc.code == 401
        else:
            # TGI answers a bad key with an empty 401 that the client cannot parse: ask once more, by hand.
            ping = {"inputs": "ping", "parameters": {"max_new_tokens": 1}}
            unauthorized = request(f"{endpoint}/generate", timeout, ping, api_key)[0] == 401
        detail = "401 Unauthorized: pass the right API key (--api-key-env)" if unauthorized else f"{kind}: {text}"
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
