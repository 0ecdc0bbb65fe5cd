"""Prometheus metrics under the engine's names (TGI's or vLLM's), rendered as text."""

from __future__ import annotations

from dataclasses import dataclass, field

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LENGTH_BUCKETS = (16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
# The engines' own bucket edges: SLO alerts count requests at an edge, so the simulator's histograms have
# the engine's. The simulator's image carries deployctl/sim/ alone, so they are copied from
# deployctl/monitoring/engines.py (which cites each engine's source); a unit test holds the two equal.


def _tgi_duration() -> tuple[float, ...]:
    # TGI v3.3.4 router/src/server.rs: 35 edges, 0.0001 s times 1.5 per step (f64, as the router computes them).
    edges, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        edges.append(value)
    return tuple(edges)


_TGI_DURATION = _tgi_duration()
# vLLM 0.30.0/0.32.0 vllm/v1/metrics/buckets.py: TIME_TO_FIRST_TOKEN_, INTER_TOKEN_LATENCY_, REQUEST_LATENCY_BUCKETS.
_VLLM_TTFT = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_VLLM_ITL = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
_VLLM_REQUEST = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
VLLM_FINISHED = ("stop", "length", "abort", "error", "repetition")  # vllm/v1/engine/__init__.py, 0.30-0.32


@dataclass
class Histogram:
    buckets: tuple[float, ...] = _BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str) -> list[str]:
        counts = self.counts or [0] * len(self.buckets)
        out = [f'{name}_bucket{{le="{edge}"}} {c}' for edge, c in zip(self.buckets, counts, strict=True)]
        out += [f'{name}_bucket{{le="+Inf"}} {self.n}', f"{name}_sum {self.total}", f"{name}_count {self.n}"]
        return out


@dataclass
class Metrics:
    request_count: int = 0
    request_success: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    queue_size: int = 0
    batch_size: int = 0
    duration: Histogram = field(default_factory=lambda: Histogram(_TGI_DURATION))
    queue_duration: Histogram = field(default_factory=lambda: Histogram(_TGI_DURATION))
    per_token: Histogram = field(default_factory=lambda: Histogram(_TGI_DURATION))
    input_length: Histogram = field(default_factory=lambda: Histogram(_LENGTH_BUCKETS))
    generated_tokens: Histogram = field(default_factory=lambda: Histogram(_LENGTH_BUCKETS))
    ttft: Histogram = field(default_factory=lambda: Histogram(_VLLM_TTFT))
    itl: Histogram = field(default_factory=lambda: Histogram(_VLLM_ITL))
    e2e: Histogram = field(default_factory=lambda: Histogram(_VLLM_REQUEST))
    queue_time: Histogram = field(default_factory=lambda: Histogram(_VLLM_REQUEST))
    kv_used: int = 0  # tokens the in-flight requests hold
    kv_capacity: int = 0  # the KV pool, in tokens (0: unknown, usage reads 0)
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0

    def count_tokens(self, prompt: int, generated: int) -> None:
        self.prompt_tokens_total += prompt
        self.generation_tokens_total += generated

    def observe_request(self, seconds: float, queued: float, input_tokens: int) -> None:
        self.request_count += 1
        self.duration.observe(seconds)
        self.queue_duration.observe(queued)
        self.e2e.observe(seconds)
        self.queue_time.observe(queued)
        self.input_length.observe(input_tokens)

    @property
    def kv_usage(self) -> float:
        """Give the share of the KV pool the in-flight requests hold (1 at most)."""
        return min(1.0, self.kv_used / self.kv_capacity) if self.kv_capacity else 0.0

    def success(self, generated: int, seconds: float) -> None:
        self.request_success += 1
        self.generated_tokens.observe(generated)
        if generated:
            self.per_token.observe(seconds / generated)

    def failure(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def render(self) -> str:
        lines = [
            "# TYPE tgi_request_count counter",
            f"tgi_request_count {self.request_count}",
            "# TYPE tgi_request_success counter",
            f"tgi_request_success {self.request_success}",
            "# TYPE tgi_request_failure counter",
            *[f'tgi_request_failure{{err="{k}"}} {v}' for k, v in sorted(self.failures.items())],
            "# TYPE tgi_queue_size gauge",
            f"tgi_queue_size {self.queue_size}",
            "# TYPE tgi_batch_current_size gauge",
            f"tgi_batch_current_size {self.batch_size}",
            "# TYPE tgi_batch_current_max_tokens gauge",
            f"tgi_batch_current_max_tokens {min(self.kv_used, self.kv_capacity) if self.kv_capacity else 0}",
            "# TYPE tgi_batch_max_total_tokens gauge",
            f"tgi_batch_max_total_tokens {self.kv_capacity}",
        ]
        for name, hist in (
            ("tgi_request_duration", self.duration),
            ("tgi_request_queue_duration", self.queue_duration),
            ("tgi_request_mean_time_per_token_duration", self.per_token),
            ("tgi_request_input_length", self.input_length),
            ("tgi_request_generated_tokens", self.generated_tokens),
        ):
            lines.append(f"# TYPE {name} histogram")
            lines += hist.lines(name)
        return "\n".join(lines) + "\n"

    def render_vllm(self, model_name: str) -> str:
        """Give the metrics under vLLM's names (v1/metrics/loggers.py): counters with _total, `model_name` label."""
        label = f'model_name="{model_name}",engine="0"'
        lines = [
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{label}}} {self.batch_size}",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{label}}} {self.queue_size}",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{label}}} {self.kv_usage}",
            "# TYPE vllm:num_preemptions_total counter",
            f"vllm:num_preemptions_total{{{label}}} 0",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{label}}} {self.prompt_tokens_total}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{label}}} {self.generation_tokens_total}",
            "# TYPE vllm:request_success_total counter",
            # vLLM makes a series per finish reason at start-up; every simulated request stops normally.
            *[
                f'vllm:request_success_total{{{label},finished_reason="{r}"}} {self.request_success if r == "stop" else 0}'
                for r in VLLM_FINISHED
            ],
        ]
        for name, hist in (
            ("vllm:time_to_first_token_seconds", self.ttft),
            ("vllm:inter_token_latency_seconds", self.itl),
            ("vllm:e2e_request_latency_seconds", self.e2e),
            ("vllm:request_queue_time_seconds", self.queue_time),
        ):
            lines.append(f"# TYPE {name} histogram")
            lines += [
                line.replace("{", f"{{{label},", 1) if "{" in line else line.replace(" ", f"{{{label}}} ", 1)
                for line in hist.lines(name)
            ]
        return "\n".join(lines) + "\n"
