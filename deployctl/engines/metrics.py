"""What an engine serves on /metrics, as plain data: each family's name, kind and source, and the histograms'
bucket edges. Each engine module (tgi.py, vllm.py) holds its own `METRICS`, read from the engine's source at
the release deployctl runs; deployctl/monitoring/ builds the rules, dashboards and `health`'s reading from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class Family:
    """One metric family as the engine serves it on /metrics."""

    name: str  # as scraped (counters with the suffix the engine's library writes)
    kind: Kind
    source: str  # file, function and version it was read from


@dataclass(frozen=True)
class Latency:
    """A latency histogram and the bucket edges the engine gives it (an SLO is counted at one of them)."""

    family: Family
    buckets: tuple[float, ...]
    # False where the engine records no histogram of exactly this and the family bounds it from below.
    exact: bool = True
    note: str = ""


@dataclass(frozen=True)
class EngineMetrics:
    """What the rules, dashboards and `health` read from one engine's /metrics."""

    engine: str
    version: str
    waiting: Family  # requests queued, not yet running
    running: Family  # requests in the running batch
    # KV cache usage as a fraction, from one or two gauges (used / capacity where the engine gives both).
    kv_used: Family
    kv_capacity: Family | None
    preemptions: Family | None  # requests evicted from the KV cache and recomputed
    finished: Family  # a counter of requests (the denominator of the error ratio)
    errors: Family  # a counter of requests the server failed
    errors_matcher: str  # label matchers on `errors` that pick the server's own failures
    generated_tokens: Family  # a counter (or a histogram's _sum) of tokens generated
    prompt_tokens: Family
    ttft: Latency
    itl: Latency
    e2e: Latency
    queue: Latency

    def families(self) -> list[Family]:
        """Give every family the monitoring reads, once each."""
        found = [
            self.waiting,
            self.running,
            self.kv_used,
            self.kv_capacity,
            self.preemptions,
            self.finished,
            self.errors,
            self.generated_tokens,
            self.prompt_tokens,
            self.ttft.family,
            self.itl.family,
            self.e2e.family,
            self.queue.family,
        ]
        out: list[Family] = []
        for f in found:
            if f is not None and f not in out:
                out.append(f)
        return out
