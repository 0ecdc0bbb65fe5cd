"""What the alerts watch, read once from the engine's /metrics: for `health` and `status` at a site without Prometheus.

The same names (each engine module's METRICS) and the same thresholds (monitoring/thresholds.py) as the
rules. One reading cannot see a trend, so what needs one is judged over the engine's lifetime
(its counters since it started) and said so: the error ratio, the preemptions.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from deployctl.monitoring.engines import EngineMetrics, for_engine
from deployctl.monitoring.thresholds import Thresholds

MAX_BYTES = 8 * 2**20  # a /metrics page of a few hundred series is tens of KiB; more is not an engine's
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Series:
    """Give the samples of Prometheus's text format by name, as Prometheus stores them (no name rewritten)."""
    out: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.setdefault(m.group(1), []).append((dict(_LABEL.findall(m.group(2) or "")), value))
    return out


def _total(series: Series, name: str, matcher: str = "") -> float | None:
    """Give the sum of a family's samples whose labels match `matcher` (k="v" or k=~"a|b"), or None if absent."""
    samples = series.get(name)
    if samples is None:
        return None
    wanted = _matcher(matcher)
    return sum(v for labels, v in samples if all(test(labels.get(k, "")) for k, test in wanted.items()))


def _matcher(text: str) -> dict[str, Any]:
    tests: dict[str, Any] = {}
    for key, op, value in re.findall(r'([a-zA-Z_]+)(=~|=)"([^"]*)"', text):
        if op == "=":
            tests[key] = lambda v, want=value: v == want
        else:
            pattern = re.compile(value)
            tests[key] = lambda v, p=pattern: bool(p.fullmatch(v))
    return tests


@dataclass(frozen=True)
class Verdict:
    alert: str  # the alert of docs/monitoring.md that watches the same fact
    severity: str  # the alert's: a critical one firing makes `health` say degraded
    firing: bool
    detail: str


@dataclass
class EngineFacts:
    """One reading of the engine's /metrics, with the verdicts the alerts would give."""

    engine: str
    kv_cache_usage: float | None = None
    requests_waiting: float | None = None
    requests_running: float | None = None
    requests_finished: float | None = None
    requests_failed: float | None = None
    error_ratio: float | None = None  # since the engine started
    preemptions: float | None = None  # since the engine started
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        """Give whether an alert of severity critical would fire on this reading."""
        return any(v.firing and v.severity == "critical" for v in self.verdicts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kv(m: EngineMetrics, series: Series) -> float | None:
    used = series.get(m.kv_used.name)
    if not used:
        return None
    if m.kv_capacity is None:
        return max(v for _, v in used)
    capacity = _total(series, m.kv_capacity.name)
    return min(1.0, max(v for _, v in used) / capacity) if capacity else None


def judge(text: str, t: Thresholds) -> EngineFacts:
    """Give the facts of one /metrics page of the stack's engine, judged by the alerts' thresholds."""
    m = for_engine(t.engine)
    series = parse(text)
    facts = EngineFacts(engine=t.engine)
    facts.kv_cache_usage = _kv(m, series)
    facts.requests_waiting = _total(series, m.waiting.name)
    facts.requests_running = _total(series, m.running.name)
    facts.requests_finished = _total(series, m.finished.name)
    facts.requests_failed = _total(series, m.errors.name, m.errors_matcher) or 0.0
    if m.preemptions is not None:
        facts.preemptions = _total(series, m.preemptions.name)
    if facts.requests_finished:
        facts.error_ratio = round(facts.requests_failed / facts.requests_finished, 6)
    kv = facts.kv_cache_usage
    if kv is not None:
        facts.verdicts += [
            Verdict(
                "LLMKVCacheFull",
                "critical",
                kv >= t.kv_full.value,
                f"KV cache {kv:.0%} (full at {t.kv_full.value:.0%})",
            ),
            Verdict(
                "LLMKVCacheHigh",
                "warning",
                kv > t.kv_high.value,
                f"KV cache {kv:.0%} (high past {t.kv_high.value:.0%})",
            ),
        ]
    if facts.error_ratio is not None:
        facts.verdicts.append(
            Verdict(
                "LLMErrorRateHigh",
                "critical",
                facts.error_ratio > t.error_ratio.value,
                f"{facts.error_ratio:.2%} of {facts.requests_finished:.0f} requests failed since the engine started "
                f"(at most {t.error_ratio.value:.0%})",
            )
        )
    return facts


def read(endpoint: str, t: Thresholds, timeout: float = 5.0) -> EngineFacts | str:
    """Give the facts of the engine at `endpoint`, or why /metrics could not be read."""
    from deployctl.http import request

    status, body = request(f"{endpoint.rstrip('/')}/metrics", timeout, limit=MAX_BYTES + 1)
    if status != 200:
        return "nothing answers /metrics" if status is None else f"/metrics answered {status}"
    if len(body) > MAX_BYTES:
        return f"/metrics is larger than {MAX_BYTES // 2**20} MiB: not read"
    return judge(body.decode(errors="replace"), t)
