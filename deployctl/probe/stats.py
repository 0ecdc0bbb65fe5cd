"""Benchmark metrics, defined as vLLM's and TGI's benchmarks define them (docs/bench.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from deployctl.probe.load import Result


@dataclass(frozen=True)
class Summary:
    p50: float | None
    p90: float | None
    p99: float | None
    mean: float | None

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        if not values:
            return cls(None, None, None, None)
        s = sorted(values)
        return cls(percentile(s, 50), percentile(s, 90), percentile(s, 99), sum(s) / len(s))

    def get(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


def percentile(sorted_values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    percentile: str = "p90"

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.itl_ms, self.e2e_ms))

    def met_by(self, ttft_ms: float, itl_ms: list[float], e2e_ms: float) -> bool:
        """Give whether one request met every SLO (its own worst gap counts for ITL)."""
        return (
            (self.ttft_ms is None or ttft_ms <= self.ttft_ms)
            and (self.itl_ms is None or not itl_ms or max(itl_ms) <= self.itl_ms)
            and (self.e2e_ms is None or e2e_ms <= self.e2e_ms)
        )


@dataclass
class LevelStats:
    mode: str
    load: float  # concurrency or target rate
    requests: int
    completed: int
    duration_s: float
    ttft_ms: Summary
    itl_ms: Summary
    tpot_ms: Summary
    e2e_ms: Summary
    output_tokens_per_s: float
    requests_per_s: float
    goodput_rps: float | None
    goodput_fraction: float | None
    send_lag_ms: Summary
    errors: dict[str, int] = field(default_factory=dict)
    meets_slo: bool | None = None
    resent: int = 0  # requests sent again after the server closed an idle kept-alive connection (load.one)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(mode: str, load: float, results: list[Result], duration: float, slo: Slo) -> LevelStats:
    """Give one load level's metrics. Latencies start at each request's scheduled time."""
    ok = [r for r in results if r.ok]
    ttft, itl, tpot, e2e, good = [], [], [], [], 0
    for r in ok:
        assert r.first_token is not None and r.end is not None
        t = (r.first_token - r.scheduled) * 1000
        gaps = [(b - a) * 1000 for a, b in zip(r.token_times, r.token_times[1:], strict=False)]
        total = (r.end - r.scheduled) * 1000
        ttft.append(t)
        itl.extend(gaps)
        e2e.append(total)
        if r.output_tokens > 1:
            tpot.append((total - t) / (r.output_tokens - 1))
        good += slo.met_by(t, gaps, total)
    errors: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kind = r.error or "incomplete"
            errors[kind] = errors.get(kind, 0) + 1
    stats = LevelStats(
        mode=mode,
        load=load,
        requests=len(results),
        completed=len(ok),
        duration_s=round(duration, 3),
        ttft_ms=Summary.of(ttft),
        itl_ms=Summary.of(itl),
        tpot_ms=Summary.of(tpot),
        e2e_ms=Summary.of(e2e),
        output_tokens_per_s=sum(r.output_tokens for r in ok) / duration if duration else 0.0,
        requests_per_s=len(ok) / duration if duration else 0.0,
        goodput_rps=good / duration if slo.any and duration else None,
        goodput_fraction=good / len(results) if slo.any and results else None,
        send_lag_ms=Summary.of([(r.sent - r.scheduled) * 1000 for r in results]),
        errors=errors,
        resent=sum(r.resent for r in results),
    )
    stats.meets_slo = _meets(stats, slo) if slo.any else None
    return stats


def _meets(s: LevelStats, slo: Slo) -> bool:
    """A level meets the SLO when its chosen percentile of each metric is within target and under 1% fail."""
    checks = [(s.ttft_ms, slo.ttft_ms), (s.itl_ms, slo.itl_ms), (s.e2e_ms, slo.e2e_ms)]
    for summary, target in checks:
        if target is not None:
            value = summary.get(slo.percentile)
            if value is None or value > target:
                return False
    return s.requests > 0 and (s.requests - s.completed) / s.requests < 0.01


def max_qps_under_slo(levels: list[LevelStats]) -> LevelStats | None:
    """Give the level with the most requests/s among those that meet the SLO."""
    passing = [lv for lv in levels if lv.meets_slo]
    return max(passing, key=lambda lv: lv.requests_per_s) if passing else None
