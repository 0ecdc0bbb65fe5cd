"""Prometheus recording and alert rules for one stack, under the engine's own metric names.

Every series is selected by the labels the scrape configuration puts on the stack's targets
(`deployctl_stack`, `deployctl_role`), so one Prometheus can watch several stacks. Latency SLOs are
multi-window, multi-burn-rate alerts over the engine's histograms (The Site Reliability Workbook,
ch. 5); each alert's annotations say what it means, what to do and why its threshold is what it is
(docs/monitoring.md says the same at length).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from deployctl.monitoring import gpu
from deployctl.monitoring.engines import EngineMetrics, Latency, bucket_at_or_below, for_engine, le_matcher
from deployctl.monitoring.thresholds import TEMPERATURE_FALLBACK_C, Thresholds

STACK_LABEL = "deployctl_stack"
ROLE_LABEL = "deployctl_role"
ENGINE_ROLE, GPU_ROLE = "engine", "gpu"
DOCS = "docs/monitoring.md"
BY = f"sum by ({STACK_LABEL})"


def quote(value: str) -> str:
    """Give a PromQL string literal (Go's escapes, which JSON's are a subset of)."""
    return json.dumps(value)


def selector(t: Thresholds, role: str | None = None, extra: str = "") -> str:
    """Give the label matchers of the stack's series (of one role: the engine's or the GPU exporter's)."""
    parts = [f"{STACK_LABEL}={quote(t.stack)}"]
    if role:
        parts.append(f"{ROLE_LABEL}={quote(role)}")
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class Alert:
    """One alert rule, with what the operator reads when it fires."""

    name: str
    expr: str
    hold: str | None
    severity: str
    summary: str
    action: str  # what to do
    reason: str  # why the threshold is what it is
    labels: tuple[tuple[str, str], ...] = ()

    def as_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.hold:
            rule["for"] = self.hold
        rule["labels"] = {"severity": self.severity, **dict(self.labels)}
        rule["annotations"] = {
            "summary": self.summary,
            "description": f"{self.action} Threshold: {self.reason}.",
            "runbook": f"{DOCS}#{self.name.lower()}",
        }
        return rule


# -- expressions the rules, the dashboards and `health` share ------------------------------------------------
def kv_usage(m: EngineMetrics, t: Thresholds) -> str:
    """Give the KV cache usage (0-1) of the fullest engine instance of the stack."""
    sel = selector(t, ENGINE_ROLE)
    if m.kv_capacity is None:
        return f"max by ({STACK_LABEL}) ({m.kv_used.name}{sel})"
    return f"max by ({STACK_LABEL}) ({m.kv_used.name}{sel} / {m.kv_capacity.name}{sel})"


def rate(name: str, sel: str, window: str) -> str:
    return f"{BY} (rate({name}{sel}[{window}]))"


def error_ratio(m: EngineMetrics, t: Thresholds, window: str) -> str:
    """Give the share of requests the server failed over `window` (0 when none failed, no data when none came)."""
    sel = selector(t, ENGINE_ROLE)
    errors_sel = selector(t, ENGINE_ROLE, m.errors_matcher)
    finished = rate(m.finished.name, sel, window)
    # A counter with no failure yet may not exist (TGI creates it on the first): count it as 0.
    return f"({rate(m.errors.name, errors_sel, window)} or {finished} * 0) / {finished}"


def slo_miss_ratio(latency: Latency, t: Thresholds, target_s: float, window: str) -> str:
    """Give the share of requests slower than the SLO over `window`, counted at the bucket edge at or below it."""
    sel = selector(t, ENGINE_ROLE)
    edge = bucket_at_or_below(latency, target_s)
    le_sel = selector(t, ENGINE_ROLE, f"le=~{quote(le_matcher(edge))}")
    name = latency.family.name
    return f"1 - ({rate(name + '_bucket', le_sel, window)} / {rate(name + '_count', sel, window)})"


def quantile(latency: Latency, t: Thresholds, q: float, window: str = "5m") -> str:
    """Give the q-quantile of a latency histogram over the stack's engines."""
    sel = selector(t, ENGINE_ROLE)
    return f"histogram_quantile({q}, sum by ({STACK_LABEL}, le) (rate({latency.family.name}_bucket{sel}[{window}])))"


def record_name(kind: str, window: str) -> str:
    return f"deployctl:{kind}_slo_miss:ratio_rate{window}"


KV_RECORD = "deployctl:kv_cache_usage:max"
WAITING_RECORD = "deployctl:requests_waiting:sum"
ERRORS_RECORD = "deployctl:request_errors:ratio_rate"


# -- the rules ------------------------------------------------------------------------------------------------
def _slo_kinds(m: EngineMetrics, t: Thresholds) -> list[tuple[str, str, Latency, float]]:
    """Give (kind, title, histogram, target in s) for each latency SLO the user set."""
    out = []
    if t.slo.ttft_ms is not None:
        out.append(("ttft", "time to first token", m.ttft, t.slo.ttft_ms / 1000))
    if t.slo.itl_ms is not None:
        out.append(("itl", "inter-token latency", m.itl, t.slo.itl_ms / 1000))
    return out


def recording_rules(m: EngineMetrics, t: Thresholds) -> list[dict[str, Any]]:
    """Give the recorded series the alerts and dashboards read."""
    out: list[dict[str, Any]] = [
        {"record": KV_RECORD, "expr": kv_usage(m, t)},
        {"record": WAITING_RECORD, "expr": f"{BY} ({m.waiting.name}{selector(t, ENGINE_ROLE)})"},
    ]
    out += [{"record": ERRORS_RECORD + w, "expr": error_ratio(m, t, w)} for w in ("5m", "1h")]
    windows = sorted({w for long, short, _, _ in t.slo.burn_windows() for w in (long, short)}, key=_seconds)
    for kind, _, latency, target in _slo_kinds(m, t):
        out += [{"record": record_name(kind, w), "expr": slo_miss_ratio(latency, t, target, w)} for w in windows]
    return out


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[window[-1]]


def engine_alerts(m: EngineMetrics, t: Thresholds) -> list[Alert]:
    """Give the alerts on the engine's own metrics."""
    up = f"up{selector(t, ENGINE_ROLE)}"
    stack = selector(t)
    out = [
        Alert(
            "LLMEngineDown",
            f"{up} == 0 or absent({up})",
            t.hold(60),
            "critical",
            "The engine of {{ $labels.deployctl_stack }} does not answer /metrics ({{ $labels.instance }}).",
            "Run `deployctl status` and `deployctl logs`; `deployctl health` says whether it serves.",
            "a minute: four failed scrapes at 15 s, more than a blip, less than users wait before calling",
        ),
        Alert(
            "LLMEngineRestarted",
            f"{BY} (resets({m.finished.name}{selector(t, ENGINE_ROLE)}[15m])) > 0 or {BY} (changes({up}[15m])) >= 2",
            None,
            "warning",
            "The engine of {{ $labels.deployctl_stack }} restarted in the last 15 minutes.",
            "Read `deployctl logs` for the cause (out of memory, a crash, an upgrade); `deployctl status` counts restarts.",
            "any restart: its request counters started again from zero, or its target went away and came back",
        ),
        Alert(
            "LLMKVCacheHigh",
            f"{KV_RECORD}{stack} > {t.kv_high.value}",
            t.hold(600),
            "warning",
            "KV cache of {{ $labels.deployctl_stack }} at {{ $value | humanizePercentage }} for 10 minutes.",
            "Long requests will queue; lower max_total_tokens or concurrency, or add a GPU/replica (`deployctl plan`).",
            t.kv_high.reason,
        ),
        Alert(
            "LLMKVCacheFull",
            f"{KV_RECORD}{stack} >= {t.kv_full.value}",
            t.hold(120),
            "critical",
            "KV cache of {{ $labels.deployctl_stack }} full ({{ $value | humanizePercentage }}).",
            "Requests are preempted or queue: reduce load or context length now; plan more KV (`deployctl plan`).",
            t.kv_full.reason,
        ),
        Alert(
            "LLMRequestsWaiting",
            f"{WAITING_RECORD}{stack} > 0",
            t.hold(300),
            "warning",
            "{{ $value }} requests of {{ $labels.deployctl_stack }} wait; the queue has not emptied for 5 minutes.",
            "The engine is at its batch or KV limit all the time: latency grows by the wait. Shed load or add capacity.",
            "a queue that never empties for 5 minutes is a steady overload, not a burst",
        ),
        Alert(
            "LLMErrorRateHigh",
            f"{ERRORS_RECORD}5m{stack} > {t.error_ratio.value} and {ERRORS_RECORD}1h{stack} > {t.error_ratio.value}",
            None,
            "critical",
            "{{ $value | humanizePercentage }} of the requests of {{ $labels.deployctl_stack }} fail.",
            "Read `deployctl logs`; overloaded (429) means too many concurrent requests for max_concurrent_requests.",
            f"{t.error_ratio.reason}; over 5 minutes and over the hour, so a short burst alone does not fire",
        ),
    ]
    if m.preemptions is not None:
        out.append(
            Alert(
                "LLMRequestsPreempted",
                f"{rate(m.preemptions.name, selector(t, ENGINE_ROLE), '5m')} > 0",
                t.hold(600),
                "warning",
                "{{ $labels.deployctl_stack }} preempts requests ({{ $value | humanize }}/s) for 10 minutes.",
                "The KV cache cannot hold the running batch: each preemption recomputes a request. Lower concurrency or context.",
                "preemption is vLLM running out of KV blocks; sustained for 10 minutes it costs throughput and latency",
            )
        )
    for kind, title, latency, target in _slo_kinds(m, t):
        edge = bucket_at_or_below(latency, target)
        bound = "" if latency.exact else f" ({latency.note})"
        for long, short, burn, severity in t.slo.burn_windows():
            limit = round(burn * t.slo.budget, 6)
            out.append(
                Alert(
                    f"LLM{kind.upper()}SLOBurn",
                    f"{record_name(kind, long)}{stack} > {limit} and {record_name(kind, short)}{stack} > {limit}",
                    None,
                    severity,
                    f"{{{{ $labels.deployctl_stack }}}}: {{{{ $value | humanizePercentage }}}} of requests miss the "
                    f"{title} SLO of {target * 1000:g} ms over {long}.",
                    f"At this rate the error budget ({t.slo.budget:.1%} of requests) lasts "
                    f"{30 / burn:.1f} days of 30. Check load, KV usage and the GPUs' clocks.",
                    f"burn rate {burn:g} over {long} and {short} (SRE workbook table 5-8), counted at the "
                    f"{edge * 1000:g} ms bucket edge{bound}",
                    (("long_window", long),),
                )
            )
    return out


def gpu_alerts(t: Thresholds) -> list[Alert]:
    """Give the alerts on the GPU exporter's readings."""
    g = selector(t, GPU_ROLE)
    out = [
        Alert(
            "LLMGpuExporterDown",
            f"up{g} == 0",
            t.hold(300),
            "warning",
            "The GPU exporter of {{ $labels.deployctl_stack }} does not answer ({{ $labels.instance }}).",
            "Start it again (`deployctl exporter`, or the stack's monitoring profile); GPU alerts are blind meanwhile.",
            "5 minutes: the GPU alerts below cannot fire without it",
        ),
        Alert(
            "LLMGpuLost",
            f"{gpu.UP}{g} == 0",
            t.hold(60),
            "critical",
            "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) does not answer NVML.",
            "It has likely fallen off the bus: check `dmesg` for Xid errors; the host needs a reboot.",
            "NVML answers for every healthy GPU; a minute without is not a blip",
        ),
        Alert(
            "LLMGpuPowerAtCap",
            f"{gpu.POWER}{g} / {gpu.POWER_LIMIT}{g} > {t.power_at_cap.value}",
            t.hold(1800),
            "info",
            "GPU {{ $labels.gpu }} has drawn its power limit for 30 minutes.",
            "The cap holds the clocks back; `deployctl power tune` measures what a higher or lower cap costs.",
            t.power_at_cap.reason,
        ),
        Alert(
            "LLMGpuHot",
            f"{gpu.TEMPERATURE}{g} >= ({gpu.SLOWDOWN}{g} - {t.temperature_margin_c.value:g})"
            f" or ({gpu.TEMPERATURE}{g} >= {TEMPERATURE_FALLBACK_C:g} unless {gpu.SLOWDOWN}{g})",
            t.hold(300),
            "warning",
            "GPU {{ $labels.gpu }} at {{ $value }} °C, close to its slowdown temperature.",
            "Check the airflow and fans; a lower power cap (`deployctl power set`) lowers the heat.",
            t.temperature_margin_c.reason,
        ),
        Alert(
            "LLMGpuThrottled",
            f"max by ({STACK_LABEL}, instance, gpu, uuid) "
            f"({gpu.THROTTLE}{selector(t, GPU_ROLE, 'reason=~' + quote('|'.join(gpu.HEAT_REASONS)))}) == 1",
            t.hold(300),
            "warning",
            "GPU {{ $labels.gpu }} is slowed by heat or a hardware brake.",
            "The driver lowers the clocks (thermal or power-brake slowdown): cool the room or the card, check the PSU.",
            "a heat or hardware slowdown for 5 minutes (the power cap at work is LLMGpuPowerAtCap, not this)",
        ),
        Alert(
            "LLMGpuMemoryFull",
            f"{gpu.MEMORY_USED}{g} / {gpu.MEMORY_TOTAL}{g} > {t.gpu_memory.value}",
            t.hold(600),
            "warning",
            "GPU {{ $labels.gpu }} memory at {{ $value | humanizePercentage }}.",
            "Another process, or a leak, takes memory the engine counts on: `nvidia-smi` lists the processes.",
            t.gpu_memory.reason,
        ),
    ]
    if t.power_limit_w is not None:
        out.append(
            Alert(
                "LLMGpuPowerLimitNotPlanned",
                f"abs({gpu.POWER_LIMIT}{g} - {t.power_limit_w:g}) >= 1",
                t.hold(300),
                "warning",
                "GPU {{ $labels.gpu }} enforces {{ $value }} W off the planned cap.",
                f"The plan caps at {t.power_limit_w:g} W; a reboot resets limits: `sudo deployctl power set "
                f"{t.power_limit_w:g} --persist`.",
                "the spec's power.limit_watts is what the plan and its throughput assume",
            )
        )
    if t.model_path is not None and t.disk_free_bytes is not None:
        fs = selector(t, GPU_ROLE, f"path={quote(t.model_path)}")
        out += [
            Alert(
                "LLMModelDiskLow",
                f"{gpu.FS_AVAIL}{fs} < {t.disk_free_bytes.value:.0f}",
                t.hold(600),
                "warning",
                "{{ $value | humanize1024 }}B free on the model folder's file system.",
                "Remove old bundles or model revisions before the next `bundle install`.",
                t.disk_free_bytes.reason,
            ),
            Alert(
                "LLMModelDiskFull",
                f"{gpu.FS_AVAIL}{fs} / {gpu.FS_SIZE}{fs} < {t.disk_free_fraction.value}",
                t.hold(300),
                "critical",
                "The model folder's file system is {{ $value | humanizePercentage }} free.",
                "Free space now: logs, Docker and installs fail on a full disk.",
                t.disk_free_fraction.reason,
            ),
        ]
    return out


def alerts(t: Thresholds, *, gpus: bool = True) -> list[Alert]:
    """Give every alert of the stack (the GPU ones only where the GPU exporter is scraped)."""
    m = for_engine(t.engine)
    return engine_alerts(m, t) + (gpu_alerts(t) if gpus else [])


def rule_file(t: Thresholds, *, gpus: bool = True) -> dict[str, Any]:
    """Give the Prometheus rule file (groups of recording and alert rules) as data."""
    m = for_engine(t.engine)
    return {
        "groups": [
            {"name": f"deployctl-{t.stack}-records", "rules": recording_rules(m, t)},
            {"name": f"deployctl-{t.stack}-alerts", "rules": [a.as_rule() for a in alerts(t, gpus=gpus)]},
        ]
    }
