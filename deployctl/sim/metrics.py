"""Prometheus metrics under the engine's names (TGI's or vLLM's), rendered as text."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LENGTH_BUCKETS = (16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
# The engines' own bucket edges: SLO alerts count requests at an edge, so the simulator's histograms have
# the engine's. The simulator's image carries deployctl/sim/ alone, so they are copied from
# deployctl/engines/tgi.py and vllm.py (METRICS, which cite each engine's source); a unit test holds the two equal.


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
    http: bool = False  # count HTTP requests per route (vLLM's instrumentator families)
    created: float = field(default_factory=time.time)
    finished_reasons: dict[str, int] = field(default_factory=dict)
    request_prompt_tokens: Histogram = field(default_factory=lambda: Histogram(_LENGTH_BUCKETS))
    request_generation_tokens: Histogram = field(default_factory=lambda: Histogram(_LENGTH_BUCKETS))
    request_max_tokens: Histogram = field(default_factory=lambda: Histogram(_LENGTH_BUCKETS))
    http_requests: dict[tuple[str, str, str], int] = field(default_factory=dict)
    http_durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)

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

    def finished(self, prompt: int, generated: int, reason: str, max_tokens: int | None) -> None:
        """Count a finished vLLM-dialect request: its tokens, why it stopped and what it asked for."""
        self.count_tokens(prompt, generated)
        self.finished_reasons[reason] = self.finished_reasons.get(reason, 0) + 1
        self.request_prompt_tokens.observe(prompt)
        self.request_generation_tokens.observe(generated)
        if max_tokens is not None:
            self.request_max_tokens.observe(max_tokens)

    @web.middleware
    async def http_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Count each answered request as prometheus-fastapi-instrumentator does in vLLM (handler, method, status class)."""
        start = time.perf_counter()
        response: web.StreamResponse = await handler(request)
        route = request.match_info.route.resource
        path = route.canonical if route is not None else "none"
        key = (path, request.method, f"{response.status // 100}xx")
        self.http_requests[key] = self.http_requests.get(key, 0) + 1
        self.http_durations.setdefault((path, request.method), Histogram(_HTTP_BUCKETS)).observe(
            time.perf_counter() - start
        )
        return response

    def render_vllm(self, model_name: str, cfg: Any = None) -> str:
        """Give /metrics as vLLM 0.32.0 exposes it (v1/metrics/loggers.py through prometheus_client, and the
        HTTP and process collectors): every family it sends, under its names, types and label names, values
        as floats. Families the simulator has nothing to count for are sent at zero, as vLLM sends them."""
        out = _Exposition()
        base = {"engine": "0", "model_name": model_name}
        tracked_counters = {
            "vllm:prompt_tokens": self.prompt_tokens_total,
            "vllm:generation_tokens": self.generation_tokens_total,
        }
        tracked_gauges = {
            "vllm:num_requests_running": self.batch_size,
            "vllm:num_requests_waiting": self.queue_size,
            "vllm:kv_cache_usage_perc": self.kv_usage,  # of the plan's pool (SIM_KV_TOKENS)
        }
        tracked_hists = {
            "vllm:time_to_first_token_seconds": self.ttft,
            "vllm:inter_token_latency_seconds": self.itl,
            "vllm:e2e_request_latency_seconds": self.e2e,  # vLLM's own bucket edges (REQUEST_LATENCY_BUCKETS)
            "vllm:request_queue_time_seconds": self.queue_time,
            "vllm:request_prompt_tokens": self.request_prompt_tokens,
            "vllm:request_generation_tokens": self.request_generation_tokens,
            "vllm:request_params_max_tokens": self.request_max_tokens,
        }
        for name, kind, extra in VLLM_FAMILIES:
            for values in extra or [{}]:
                labels = {**base, **values}
                if name == "vllm:admission_rejections":
                    labels.pop("engine")
                if kind == "counter":
                    if name == "vllm:request_success":
                        value = float(self.finished_reasons.get(values["finished_reason"], 0))
                    else:
                        value = float(tracked_counters.get(name, 0))
                    out.counter(name, labels, value, self.created)
                elif kind == "gauge":
                    out.gauge(name, labels, float(tracked_gauges.get(name, 0)))
                else:
                    out.histogram(name, labels, tracked_hists.get(name) or Histogram(), self.created)
        out.gauge("vllm:cache_config_info", {**_cache_info(cfg), "engine": "0"}, 1.0)
        self._render_http(out)
        _render_process(out, self.created)
        return out.text()

    def _render_http(self, out: _Exposition) -> None:
        requests = self.http_requests or {("/metrics", "GET", "2xx"): 0}
        for (handler, method, status), n in sorted(requests.items()):
            out.counter(
                "http_requests", {"handler": handler, "method": method, "status": status}, float(n), self.created
            )
        for summary in ("http_request_size_bytes", "http_response_size_bytes"):
            for handler in sorted({h for h, _, _ in requests}):
                out.summary(summary, {"handler": handler}, 0.0, 0.0, self.created)
        every = Histogram(_HTTP_BUCKETS)
        for (handler, method), hist in sorted(self.http_durations.items()):
            out.histogram("http_request_duration_seconds", {"handler": handler, "method": method}, hist, self.created)
            every.counts = [a + b for a, b in zip(every.counts or [0] * len(every.buckets), hist.counts, strict=True)]
            every.n += hist.n
            every.total += hist.total
        if not self.http_durations:
            out.histogram(
                "http_request_duration_seconds", {"handler": "/metrics", "method": "GET"}, every, self.created
            )
        out.histogram("http_request_duration_highr_seconds", {}, every, self.created)


# vLLM 0.32.0's engine families (v1/metrics/loggers.py PrometheusStatLogger), as recorded from the real server
# (tests/data/vllm/recorded-0.32.0.json): name, type, and the values of labels past engine and model_name.
_REASONS = [{"finished_reason": r} for r in VLLM_FINISHED]
_SOURCES = [{"source": s} for s in ("local_compute", "local_cache_hit", "external_kv_transfer")]
VLLM_FAMILIES: list[tuple[str, str, list[dict[str, str]]]] = [
    ("vllm:num_requests_running", "gauge", []),
    ("vllm:num_requests_waiting", "gauge", []),
    ("vllm:num_requests_waiting_by_reason", "gauge", [{"reason": "capacity"}, {"reason": "deferred"}]),
    ("vllm:engine_sleep_state", "gauge", [{"sleep_state": "awake"}, {"sleep_state": "weights_offloaded"}]),
    ("vllm:kv_cache_usage_perc", "gauge", []),
    ("vllm:prefix_cache_queries", "counter", []),
    ("vllm:prefix_cache_hits", "counter", []),
    ("vllm:external_prefix_cache_queries", "counter", []),
    ("vllm:external_prefix_cache_hits", "counter", []),
    ("vllm:mm_cache_queries", "counter", []),
    ("vllm:mm_cache_hits", "counter", []),
    ("vllm:num_preemptions", "counter", []),
    ("vllm:prompt_tokens", "counter", []),
    ("vllm:prompt_tokens_by_source", "counter", _SOURCES),
    ("vllm:prompt_tokens_cached", "counter", []),
    ("vllm:prompt_tokens_cached_by_source", "counter", _SOURCES),
    ("vllm:generation_tokens", "counter", []),
    ("vllm:request_success", "counter", _REASONS),
    ("vllm:admission_rejections", "counter", [{"reason": "queue_full"}]),
    ("vllm:estimated_flops_per_gpu", "counter", []),
    ("vllm:estimated_read_bytes_per_gpu", "counter", []),
    ("vllm:estimated_write_bytes_per_gpu", "counter", []),
    ("vllm:request_prompt_tokens", "histogram", []),
    ("vllm:request_generation_tokens", "histogram", []),
    ("vllm:iteration_tokens_total", "histogram", []),
    ("vllm:request_max_num_generation_tokens", "histogram", []),
    ("vllm:request_params_n", "histogram", []),
    ("vllm:request_params_max_tokens", "histogram", []),
    ("vllm:request_num_preemptions", "histogram", []),
    ("vllm:time_to_first_token_seconds", "histogram", []),
    ("vllm:inter_token_latency_seconds", "histogram", []),
    ("vllm:request_time_per_output_token_seconds", "histogram", []),
    ("vllm:e2e_request_latency_seconds", "histogram", []),
    ("vllm:request_queue_time_seconds", "histogram", []),
    ("vllm:request_inference_time_seconds", "histogram", []),
    ("vllm:request_prefill_time_seconds", "histogram", []),
    ("vllm:request_decode_time_seconds", "histogram", []),
    ("vllm:request_prefill_kv_computed_tokens", "histogram", []),
]
# vllm:cache_config_info's labels: CacheConfig's fields as vLLM 0.32.0 exports them (metrics_info()).
_CACHE_INFO_LABELS = [
    "_block_size_resolved",
    "block_size",
    "cache_dtype",
    "cache_hit_alignment_tokens",
    "effective_attention_block_size",
    "enable_mamba_shared_prefix_checkpoint",
    "enable_prefix_caching",
    "gpu_memory_utilization",
    "hash_block_size",
    "is_attention_free",
    "kv_cache_dtype_skip_layers",
    "kv_cache_layout",
    "kv_cache_max_concurrency",
    "kv_cache_memory_bytes",
    "kv_cache_size_tokens",
    "kv_offloading_backend",
    "kv_offloading_size",
    "kv_sharing_fast_prefill",
    "mamba_block_size",
    "mamba_cache_dtype",
    "mamba_cache_mode",
    "mamba_page_size_padded",
    "mamba_ssm_cache_dtype",
    "num_cpu_blocks",
    "num_gpu_blocks",
    "num_gpu_blocks_override",
    "prefix_cache_retention_interval",
    "prefix_caching_hash_algo",
    "prefix_match_unit",
    "replayssm_buffer_len",
    "skip_page_size_padded",
    "sliding_window",
    "swa_bounded_replay",
    "use_kda_recoverssm",
    "use_replayssm",
    "user_specified_block_size",
]
_HTTP_BUCKETS = (0.1, 0.5, 1.0)


def _cache_info(cfg: Any) -> dict[str, str]:
    info = dict.fromkeys(_CACHE_INFO_LABELS, "None")
    if cfg is not None:
        tokens = cfg.kv_tokens
        info.update(
            {
                "block_size": "16",
                "cache_dtype": "auto",
                "enable_prefix_caching": "True",
                "gpu_memory_utilization": "0.92",
                "kv_cache_size_tokens": str(tokens),
                "kv_cache_max_concurrency": str(round(tokens / cfg.max_total_tokens, 2)),
                "num_gpu_blocks": str(tokens // 16),
            }
        )
    return info


class _Exposition:
    """Prometheus text format as prometheus_client writes it: counters as NAME_total, a NAME_created gauge
    beside counters, histograms and summaries, labels sorted, values as Go floats."""

    def __init__(self) -> None:
        self.families: dict[str, tuple[str, list[str]]] = {}

    def _add(self, family: str, kind: str, line: str) -> None:
        self.families.setdefault(family, (kind, []))[1].append(line)

    def counter(self, name: str, labels: dict[str, str], value: float, created: float) -> None:
        self._add(f"{name}_total", "counter", _sample(f"{name}_total", labels, value))
        self._add(f"{name}_created", "gauge", _sample(f"{name}_created", labels, created))

    def gauge(self, name: str, labels: dict[str, str], value: float) -> None:
        self._add(name, "gauge", _sample(name, labels, value))

    def histogram(self, name: str, labels: dict[str, str], hist: Histogram, created: float) -> None:
        counts = hist.counts or [0] * len(hist.buckets)
        for edge, c in zip(hist.buckets, counts, strict=True):
            self._add(name, "histogram", _sample(f"{name}_bucket", {**labels, "le": _go(edge)}, float(c)))
        self._add(name, "histogram", _sample(f"{name}_bucket", {**labels, "le": "+Inf"}, float(hist.n)))
        self._add(name, "histogram", _sample(f"{name}_count", labels, float(hist.n)))
        self._add(name, "histogram", _sample(f"{name}_sum", labels, hist.total))
        self._add(f"{name}_created", "gauge", _sample(f"{name}_created", labels, created))

    def summary(self, name: str, labels: dict[str, str], count: float, total: float, created: float) -> None:
        self._add(name, "summary", _sample(f"{name}_count", labels, count))
        self._add(name, "summary", _sample(f"{name}_sum", labels, total))
        self._add(f"{name}_created", "gauge", _sample(f"{name}_created", labels, created))

    def text(self) -> str:
        lines = []
        for family, (kind, samples) in self.families.items():
            lines += [f"# HELP {family} {family}", f"# TYPE {family} {kind}", *samples]
        return "\n".join(lines) + "\n"


def _go(value: float) -> str:
    """Give a float as Go (and prometheus_client) print it: 1.0, 0.5, 1.7e+09."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').zfill(2)}"
    return text if abs(value) < 1e16 else f"{value:e}"


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_go(value)}"
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {_go(value)}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render_process(out: _Exposition, created: float) -> None:
    """The process and Python collectors prometheus_client adds to every server (vLLM's included)."""
    import gc
    import platform

    rss = vms = 0.0
    try:
        fields = Path("/proc/self/statm").read_text().split()
        page = os.sysconf("SC_PAGE_SIZE")
        vms, rss = float(fields[0]) * page, float(fields[1]) * page
    except (OSError, IndexError, ValueError):
        pass
    times = os.times()
    try:
        fds = float(len(os.listdir("/proc/self/fd")))
    except OSError:
        fds = 0.0
    out.gauge("process_virtual_memory_bytes", {}, vms)
    out.gauge("process_resident_memory_bytes", {}, rss)
    out.gauge("process_start_time_seconds", {}, created)
    out._add(
        "process_cpu_seconds_total", "counter", _sample("process_cpu_seconds_total", {}, times.user + times.system)
    )
    out.gauge("process_open_fds", {}, fds)
    out.gauge("process_max_fds", {}, float(os.sysconf("SC_OPEN_MAX")))
    for name in ("python_gc_objects_collected", "python_gc_objects_uncollectable", "python_gc_collections"):
        for generation, stats in enumerate(gc.get_stats()):
            key = {"python_gc_objects_collected": "collected", "python_gc_objects_uncollectable": "uncollectable"}
            value = stats.get(key.get(name, "collections"), 0)
            out._add(
                f"{name}_total", "counter", _sample(f"{name}_total", {"generation": str(generation)}, float(value))
            )
    major, minor, patch = platform.python_version_tuple()
    info = {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }
    out.gauge("python_info", info, 1.0)
