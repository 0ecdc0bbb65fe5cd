"""`deployctl health`: /health, /info against the plan, and one short streamed generation."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from deployctl.planner.types import Plan
from deployctl.probe.http import check_url, request

HEALTHY, DEGRADED, DOWN = 0, 1, 2
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
    """What /info should say, from the plan."""

    model_id: str
    max_input_tokens: int
    max_total_tokens: int
    max_concurrent_requests: int

    @classmethod
    def from_plan(cls, plan: Plan) -> Expected:
        limits = plan.limits
        return cls(plan.model_id, limits.max_input_tokens, limits.max_total_tokens, limits.max_concurrent_requests)


def _info_check(info: dict[str, Any], expected: Expected | None) -> Check:
    if expected is None:
        return Check("info", True, f"model {info.get('model_id')} (no plan to compare with)")
    diffs = [
        f"{key} {info.get(key)!r} != plan {value!r}"
        for key, value in asdict(expected).items()
        if info.get(key) != value
    ]
    if diffs:
        return Check("info", False, "differs from the plan: " + "; ".join(diffs))
    return Check("info", True, f"matches the plan ({expected.model_id}, {expected.max_total_tokens} total tokens)")


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
    status, body = request(f"{endpoint}/info", min(timeout, 5.0))
    try:
        info = json.loads(body) if status == 200 else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        report.checks.append(Check("info", False, f"/info answered {status} without model information"))
        report.status = "degraded"
    else:
        c = _info_check(info, expected)
        report.checks.append(c)
        if not c.ok:
            report.status = "degraded"
    try:
        ttft, rate, n = _generation(endpoint, api_key, timeout, max_new_tokens)
    except Exception as exc:  # the client raises many kinds; any of them means the model does not answer
        kind = type(exc).__name__
        text = str(exc).splitlines()[0][:200] if str(exc) else kind
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
