"""Each engine's own Prometheus metric names, looked up through the engines' registry (each engine module's
`METRICS`, engines/metrics.py), and how the rules match their bucket edges.

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

from deployctl.engines.metrics import EngineMetrics, Family, Kind, Latency

__all__ = ["EngineMetrics", "Family", "Kind", "Latency", "bucket_at_or_below", "for_engine", "known", "le_matcher"]


def _metrics(name: str) -> EngineMetrics | None:
    from deployctl import engines

    return engines.get(name).metrics


def known(name: str) -> bool:
    """Give whether the metric names of the engine `name` are known (an engine added from outside may have none)."""
    return _metrics(name) is not None


def for_engine(name: str) -> EngineMetrics:
    """Give the metric names of the engine `name` (a plan's engine kind)."""
    from deployctl.errors import InputError

    found = _metrics(name)
    if found is None:
        raise InputError(
            f"no metric names known for engine {name!r}", "turn monitoring off, or give its engine module METRICS"
        )
    return found


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
