"""Grafana dashboards for one stack, generated from one description (never hand-edited JSON).

Three dashboards: the SLO overview, the engine (throughput, queue, KV, latency histograms) and the
GPUs (power against the cap, temperature, clocks, memory, energy per token). Every panel's query
reads the stack's own series (its `deployctl_stack` label) under the engine's own names, and the
e2e test asks a real Prometheus for each one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployctl.monitoring import gpu
from deployctl.monitoring.engines import EngineMetrics, Latency, for_engine
from deployctl.monitoring.rules import (
    ENGINE_ROLE,
    ERRORS_RECORD,
    GPU_ROLE,
    KV_RECORD,
    STACK_LABEL,
    WAITING_RECORD,
    quantile,
    rate,
    record_name,
    selector,
)
from deployctl.monitoring.thresholds import Thresholds

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4/11's dashboard schema
WIDTH = 24  # Grafana's grid is 24 columns wide


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # a Grafana unit id: percentunit, s, reqps, watt, celsius, hertz, bytes, ...
    queries: tuple[Query, ...]
    description: str = ""
    kind: str = "timeseries"  # or heatmap (a latency histogram's buckets over time)
    width: int = 12


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    panels: tuple[Panel, ...]

    def queries(self) -> list[str]:
        """Give every panel's query (the e2e test asks Prometheus for each)."""
        return [q.expr for p in self.panels for q in p.queries]


def _by(expr: str) -> str:
    return f"sum by ({STACK_LABEL}) ({expr})"


def _percentiles(latency: Latency, t: Thresholds) -> tuple[Query, ...]:
    return tuple(Query(quantile(latency, t, q), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99))


def _heatmap(title: str, latency: Latency, t: Thresholds, description: str) -> Panel:
    sel = selector(t, ENGINE_ROLE)
    expr = f"sum by (le) (rate({latency.family.name}_bucket{sel}[5m]))"
    return Panel(title, "s", (Query(expr, "{{le}}"),), description, kind="heatmap")


def slo_overview(m: EngineMetrics, t: Thresholds) -> Dashboard:
    """Give the dashboard an operator opens first: the SLOs, their error budget burn, errors, load."""
    sel = selector(t, ENGINE_ROLE)
    stack = selector(t)
    panels = [
        Panel(
            "Requests per second",
            "reqps",
            (Query(rate(m.finished.name, sel, "5m"), "finished"),),
            "Requests the engine finished (any reason), over 5 minutes.",
        ),
        Panel(
            "Failed requests",
            "percentunit",
            (Query(f"{ERRORS_RECORD}5m{stack}", "5m"), Query(f"{ERRORS_RECORD}1h{stack}", "1h")),
            f"Share of requests the server failed (LLMErrorRateHigh above {t.error_ratio.value:.0%} over both).",
        ),
    ]
    for kind, title, latency, target_ms in (
        ("ttft", "Time to first token", m.ttft, t.slo.ttft_ms),
        ("itl", "Inter-token latency", m.itl, t.slo.itl_ms),
    ):
        lines = _percentiles(latency, t)
        if target_ms is not None:
            lines += (Query(f"vector({target_ms / 1000:g})", "SLO"),)
        note = "" if latency.exact else f" {latency.note}."
        panels.append(Panel(f"{title} against the SLO", "s", lines, f"p50, p90, p99 over 5 minutes.{note}"))
        if target_ms is not None:
            windows = [w for long, short, _, _ in t.slo.burn_windows() for w in (short, long)]
            budget = t.slo.budget
            panels.append(
                Panel(
                    f"{title}: error budget burn rate",
                    "none",
                    tuple(
                        Query(f"{record_name(kind, w)}{stack} / {budget:g}", w)
                        for w in sorted(set(windows), key=windows.index)
                    ),
                    f"Share of requests over {target_ms:g} ms, divided by the budget ({budget:.1%}): 1 spends it "
                    "in exactly 30 days; the alerts page at 14.4 (1 h) and 6 (6 h).",
                )
            )
    panels.append(
        Panel(
            "Firing alerts",
            "none",
            (
                Query(
                    f'count by ({STACK_LABEL}) (ALERTS{{{STACK_LABEL}="{t.stack}", alertstate="firing"}}) or on() vector(0)',
                    "firing",
                ),
            ),
            "Alerts of this stack firing now (docs/monitoring.md says what each means and what to do).",
        )
    )
    return Dashboard(f"deployctl-{t.stack}-slo", f"{t.stack}: SLO overview", tuple(panels))


def engine(m: EngineMetrics, t: Thresholds) -> Dashboard:
    """Give the engine's dashboard: throughput, queue, KV cache, latency histograms."""
    sel = selector(t, ENGINE_ROLE)
    stack = selector(t)
    panels = [
        Panel(
            "Tokens per second",
            "short",
            (
                Query(rate(m.generated_tokens.name, sel, "5m"), "generated"),
                Query(rate(m.prompt_tokens.name, sel, "5m"), "prompt"),
            ),
            "Generated and prompt (prefill) tokens per second over 5 minutes.",
        ),
        Panel(
            "Running and waiting requests",
            "short",
            (Query(_by(f"{m.running.name}{sel}"), "running"), Query(f"{WAITING_RECORD}{stack}", "waiting")),
            "Requests in the running batch, and those queued behind it (LLMRequestsWaiting: never empty for 5 minutes).",
        ),
        Panel(
            "KV cache usage",
            "percentunit",
            (
                Query(f"{KV_RECORD}{stack}", "used"),
                Query(f"vector({t.kv_high.value:g})", "high"),
                Query(f"vector({t.kv_full.value:g})", "full"),
            ),
            f"The fullest engine's KV cache. High: {t.kv_high.reason}.",
        ),
    ]
    if m.preemptions is not None:
        panels.append(
            Panel(
                "Preemptions per second",
                "short",
                (Query(rate(m.preemptions.name, sel, "5m"), "preempted"),),
                "Requests evicted from the KV cache to be recomputed later.",
            )
        )
    for title, latency in (
        ("Time to first token", m.ttft),
        ("Inter-token latency", m.itl),
        ("End-to-end latency", m.e2e),
        ("Queue time", m.queue),
    ):
        note = "" if latency.exact else f" {latency.note}."
        panels.append(Panel(title, "s", _percentiles(latency, t), f"p50, p90, p99 over 5 minutes.{note}"))
    panels += [
        _heatmap(
            "Time to first token: histogram",
            m.ttft,
            t,
            "Requests per second in each bucket of the engine's own histogram.",
        ),
        _heatmap(
            "Inter-token latency: histogram",
            m.itl,
            t,
            "Requests per second in each bucket of the engine's own histogram.",
        ),
    ]
    return Dashboard(f"deployctl-{t.stack}-engine", f"{t.stack}: engine ({m.engine})", tuple(panels))


def gpus(m: EngineMetrics, t: Thresholds) -> Dashboard:
    """Give the GPUs' dashboard, from the GPU exporter: power against the cap, heat, clocks, memory, J/token."""
    g = selector(t, GPU_ROLE)
    engine_sel = selector(t, ENGINE_ROLE)
    legend = "GPU {{gpu}}"
    panels = (
        Panel(
            "Power draw against the limit",
            "watt",
            (Query(f"{gpu.POWER}{g}", f"{legend} draw"), Query(f"{gpu.POWER_LIMIT}{g}", f"{legend} limit")),
            "Board power and the enforced limit (LLMGpuPowerAtCap: within 3% for 30 minutes).",
        ),
        Panel(
            "Temperature",
            "celsius",
            (Query(f"{gpu.TEMPERATURE}{g}", legend), Query(f"{gpu.SLOWDOWN}{g}", f"{legend} slowdown")),
            "Core temperature and the board's slowdown point (NVML).",
        ),
        Panel(
            "Clocks",
            "hertz",
            (Query(f"{gpu.SM_CLOCK}{g}", f"{legend} SM"), Query(f"{gpu.MEM_CLOCK}{g}", f"{legend} memory")),
            "SM and memory clocks: decode slows with the memory clock, prefill with the SM clock.",
        ),
        Panel(
            "Clock event reasons",
            "short",
            (Query(f"{gpu.THROTTLE}{g} == 1", legend + " {{reason}}"),),
            "What holds the clocks back now (sw_power_cap: the cap at work; thermal ones: LLMGpuThrottled).",
        ),
        Panel(
            "Memory",
            "bytes",
            (Query(f"{gpu.MEMORY_USED}{g}", f"{legend} used"), Query(f"{gpu.MEMORY_TOTAL}{g}", f"{legend} total")),
            f"GPU memory (LLMGpuMemoryFull past {t.gpu_memory.value:.0%}).",
        ),
        Panel(
            "Energy per generated token",
            "J",
            (
                Query(
                    f"sum by ({STACK_LABEL}) (rate({gpu.ENERGY}{g}[5m])) / "
                    f"sum by ({STACK_LABEL}) (rate({m.generated_tokens.name}{engine_sel}[5m]))",
                    "J/token",
                ),
            ),
            "The GPUs' energy counters (as `power tune` reads them) over the tokens generated, 5 minutes.",
        ),
    )
    return Dashboard(f"deployctl-{t.stack}-gpus", f"{t.stack}: GPUs", panels)


def dashboards(t: Thresholds, *, with_gpus: bool = True) -> list[Dashboard]:
    """Give the stack's dashboards (the GPUs' only where the GPU exporter is scraped)."""
    m = for_engine(t.engine)
    out = [slo_overview(m, t), engine(m, t)]
    return [*out, gpus(m, t)] if with_gpus else out


def grafana_json(d: Dashboard) -> dict[str, Any]:
    """Give the dashboard as Grafana's JSON model (panels laid out two to a row)."""
    panels: list[dict[str, Any]] = []
    x = y = 0
    for i, p in enumerate(d.panels, 1):
        if x + p.width > WIDTH:
            x, y = 0, y + 8
        panel: dict[str, Any] = {
            "id": i,
            "type": p.kind,
            "title": p.title,
            "description": p.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": p.width, "x": x, "y": y},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "targets": [
                {
                    "refId": chr(ord("A") + n),
                    "datasource": DATASOURCE,
                    "expr": q.expr,
                    "legendFormat": q.legend,
                    **({"format": "heatmap"} if p.kind == "heatmap" else {}),
                }
                for n, q in enumerate(p.queries)
            ],
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        }
        if p.kind == "heatmap":
            panel["options"] = {"calculate": False, "yAxis": {"unit": p.unit}}
        panels.append(panel)
        x += p.width
    return {
        "uid": d.uid,
        "title": d.title,
        "tags": ["deployctl"],
        "editable": False,
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_files(t: Thresholds, *, with_gpus: bool = True) -> dict[str, bytes]:
    """Give each dashboard as a JSON file (name: its uid), byte for byte the same for the same input."""
    return {
        f"{d.uid}.json": (json.dumps(grafana_json(d), indent=2, sort_keys=True) + "\n").encode()
        for d in dashboards(t, with_gpus=with_gpus)
    }
