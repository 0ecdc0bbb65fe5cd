"""Each engine's own Prometheus metric names, as plain data keyed by engine name, each with its source.

Read from the engine's source at the release deployctl runs, never from a summary:
- vLLM 0.30.0 and 0.32.0 (`pip download --no-deps vllm==X`): `vllm/v1/metrics/loggers.py`
  `PrometheusStatLogger.__init__` names the families; prometheus_client adds `_total` to a Counter's
  name; `vllm/v1/metrics/buckets.py` holds the histograms' default buckets. Every name and bucket
  used here is the same in both releases (0.32.0 only adds families).
- TGI 3.3.4 (the repository at tag v3.3.4): the router's `metrics::` calls (`router/src/server.rs`,
  `router/src/infer/mod.rs`, `router/src/validation.rs`, `backends/v3/src/{backend,queue,lib}.rs`);
  metrics-exporter-prometheus 0.15.3 writes a counter under its name as given (no `_total`) and a
  bucket edge with Rust's f64 Display (`formatting.rs` `write_metric_line`).

The simulator (deployctl/sim/metrics.py) serves the same names and buckets, so the rules and
dashboards are tested against it; tests/unit/test_monitoring_names.py holds every `vllm:` name used
against the names recorded from the real engine.
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


# -- vLLM 0.30.0 / 0.32.0 ------------------------------------------------------------------------------
_VLLM_LOGGERS = "vllm/v1/metrics/loggers.py PrometheusStatLogger.__init__ (vLLM 0.30.0, 0.32.0)"
_VLLM_BUCKETS = "vllm/v1/metrics/buckets.py (vLLM 0.30.0, 0.32.0)"
# TIME_TO_FIRST_TOKEN_BUCKETS
VLLM_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
# INTER_TOKEN_LATENCY_BUCKETS
VLLM_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
# REQUEST_LATENCY_BUCKETS (e2e, queue, inference, prefill, decode)
VLLM_REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
# FinishReason's label values (vllm/v1/engine/__init__.py FINISH_REASON_STRINGS, 0.30.0 and 0.32.0):
# vLLM creates a series for each at start-up, so an error ratio has its series before the first error.
VLLM_FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")


def _vllm(name: str, kind: Kind, source: str = _VLLM_LOGGERS) -> Family:
    return Family(name, kind, source)


VLLM = EngineMetrics(
    engine="vllm",
    version="0.30.0, 0.32.0",
    waiting=_vllm("vllm:num_requests_waiting", "gauge"),
    running=_vllm("vllm:num_requests_running", "gauge"),
    kv_used=_vllm("vllm:kv_cache_usage_perc", "gauge"),  # "1 means 100 percent usage"
    kv_capacity=None,
    preemptions=_vllm("vllm:num_preemptions_total", "counter"),  # Counter vllm:num_preemptions
    finished=_vllm("vllm:request_success_total", "counter"),  # every finished_reason, errors included
    errors=_vllm("vllm:request_success_total", "counter"),
    # "error - retryable request-level internal error ... always converted to 500" (FinishReason)
    errors_matcher='finished_reason="error"',
    generated_tokens=_vllm("vllm:generation_tokens_total", "counter"),
    prompt_tokens=_vllm("vllm:prompt_tokens_total", "counter"),
    ttft=Latency(_vllm("vllm:time_to_first_token_seconds", "histogram"), VLLM_TTFT_BUCKETS),
    itl=Latency(_vllm("vllm:inter_token_latency_seconds", "histogram"), VLLM_ITL_BUCKETS),
    e2e=Latency(_vllm("vllm:e2e_request_latency_seconds", "histogram"), VLLM_REQUEST_LATENCY_BUCKETS),
    queue=Latency(_vllm("vllm:request_queue_time_seconds", "histogram"), VLLM_REQUEST_LATENCY_BUCKETS),
)


# -- TGI 3.3.4 -------------------------------------------------------------------------------------------
def tgi_duration_buckets() -> tuple[float, ...]:
    """Give TGI's buckets for every histogram named *duration (router/src/server.rs `start`, v3.3.4).

    "Duration buckets": 35 edges of a geometric series, 0.0001 s times 1.5 per step, computed in f64
    as TGI does (the same doubles give the same `le` strings).
    """
    edges, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        edges.append(value)
    return tuple(edges)


_TGI_SERVER = "router/src/server.rs (TGI v3.3.4)"
_TGI_BACKEND = "backends/v3/src/backend.rs (TGI v3.3.4)"
TGI_DURATION_BUCKETS = tgi_duration_buckets()
# tgi_request_failure's `err` values (v3.3.4): overloaded and validation (infer/mod.rs), template,
# incomplete (infer/mod.rs, server.rs), dropped (queue.rs, backend.rs), generation (backend.rs).
# Validation and template errors are the client's request; the rest are the server's.
TGI_SERVER_ERRORS = ("overloaded", "incomplete", "dropped", "generation")

TGI = EngineMetrics(
    engine="tgi",
    version="3.3.4",
    waiting=Family("tgi_queue_size", "gauge", "backends/v3/src/queue.rs queue_task (TGI v3.3.4)"),
    running=Family("tgi_batch_current_size", "gauge", f"{_TGI_BACKEND} batching_task"),
    # The running batch's CachedBatch.max_tokens: for flash (paged) models num_blocks x BLOCK_SIZE, the KV
    # blocks it holds (server/.../flash_causal_lm.py FlashCausalLMBatch.to_pb, v3.3.4), of the pool the
    # router sized after warm-up (tgi_batch_max_total_tokens).
    kv_used=Family("tgi_batch_current_max_tokens", "gauge", f"{_TGI_BACKEND} batching_task"),
    kv_capacity=Family("tgi_batch_max_total_tokens", "gauge", "backends/v3/src/lib.rs connect_backend (TGI v3.3.4)"),
    preemptions=None,  # TGI's router queues; it does not evict a running request's KV cache
    finished=Family("tgi_request_count", "counter", f"{_TGI_SERVER} generate_internal, generate_stream_internal"),
    errors=Family("tgi_request_failure", "counter", "router/src/infer/mod.rs, backends/v3/src/* (TGI v3.3.4)"),
    errors_matcher='err=~"' + "|".join(TGI_SERVER_ERRORS) + '"',
    generated_tokens=Family("tgi_request_generated_tokens_sum", "histogram", f"{_TGI_SERVER} generate_internal"),
    prompt_tokens=Family("tgi_request_input_length_sum", "histogram", "router/src/validation.rs (TGI v3.3.4)"),
    # TGI 3.3.4 records no time-to-first-token histogram; the time a request waits in the queue before
    # its prefill is part of it, so an SLO missed there is missed for certain (a lower bound).
    ttft=Latency(
        Family("tgi_request_queue_duration", "histogram", f"{_TGI_SERVER} generate_internal"),
        TGI_DURATION_BUCKETS,
        exact=False,
        note="TGI records no first-token histogram: the queue time before prefill, a lower bound of TTFT",
    ),
    # Per request: (inference time) / (generated tokens), the mean gap, not each gap.
    itl=Latency(
        Family("tgi_request_mean_time_per_token_duration", "histogram", f"{_TGI_SERVER} generate_internal"),
        TGI_DURATION_BUCKETS,
        exact=False,
        note="TGI records each request's mean time per token, not each gap",
    ),
    e2e=Latency(Family("tgi_request_duration", "histogram", f"{_TGI_SERVER} generate_internal"), TGI_DURATION_BUCKETS),
    queue=Latency(
        Family("tgi_request_queue_duration", "histogram", f"{_TGI_SERVER} generate_internal"), TGI_DURATION_BUCKETS
    ),
)

ENGINES: dict[str, EngineMetrics] = {"vllm": VLLM, "tgi": TGI}


def known(name: str) -> bool:
    """Give whether the metric names of the engine `name` are known (an engine added from outside may have none)."""
    return name in ENGINES


def for_engine(name: str) -> EngineMetrics:
    """Give the metric names of the engine `name` (a plan's engine kind)."""
    from deployctl.errors import InputError

    try:
        return ENGINES[name]
    except KeyError:
        raise InputError(f"no metric names known for engine {name!r}", f"known: {', '.join(sorted(ENGINES))}") from None


def le_matcher(edge: float) -> str:
    """Give a regex matching a bucket edge as any exporter writes it, and as Prometheus 3 rewrites it.

    Python's prometheus_client writes 1.0 as "1.0" (floatToGoString), Rust's f64 Display as "1",
    and Prometheus 3 normalises `le` on ingestion to the shortest form; the digits are otherwise the
    shortest that give the same double in all three, as Python's repr does.
    """
    import re

    forms = {repr(edge)}
    if edge == int(edge):
        forms.add(str(int(edge)))
    return "|".join(re.escape(f) for f in sorted(forms))


def bucket_at_or_below(latency: Latency, seconds: float) -> float:
    """Give the largest bucket edge at or below `seconds` (an SLO counted there is stricter, never looser)."""
    below = [b for b in latency.buckets if b <= seconds * (1 + 1e-9)]
    return below[-1] if below else latency.buckets[0]
