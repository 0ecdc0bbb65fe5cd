"""Every alert, firing and not firing, on synthetic series: `promtool test rules` on the rendered rules.

The series are written as each engine serves them (its names, its labels, its bucket edges as its
library prints them); the expected outcome is stated from what the alert means (docs/monitoring.md),
with the thresholds of the plan in tests/helpers/monitoring.py. Annotations are left out of the unit
file (promtool compares them verbatim), except where a case checks one expanded.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.monitoring import MODEL_PATH, STACK, limits, series
from helpers.promtools import tool

from deployctl.monitoring import engines, gpu, rules
from deployctl.monitoring.thresholds import Thresholds

ENGINE = {"deployctl_stack": STACK, "deployctl_role": "engine", "instance": "engine:8000", "job": f"{STACK}-engine"}
GPU = {"deployctl_stack": STACK, "deployctl_role": "gpu", "instance": "gpu-exporter:9401", "job": f"{STACK}-gpu"}
BOARD = {**GPU, "gpu": "0", "uuid": "GPU-11111111-2222-3333-4444-555555555555"}
ONLY_STACK = {"deployctl_stack": STACK}


@dataclass
class Case:
    """Series, a time, and the alerts (their labels, severity included) expected firing then; [] is none."""

    title: str
    alert: str
    input: list[tuple[str, str]]
    at: str
    firing: list[dict[str, str]] = field(default_factory=list)
    annotations: list[dict[str, str]] | None = None

    @property
    def fires(self) -> bool:
        return bool(self.firing)


def engine_labels(engine: str) -> dict[str, str]:
    # vLLM labels every series with model_name and engine (loggers.py labelnames); TGI's carry none of their own.
    return {**ENGINE, "model_name": "m", "engine": "0"} if engine == "vllm" else dict(ENGINE)


def kv(engine: str, values: str, fraction_of: float = 1.0) -> list[tuple[str, str]]:
    """KV usage series: vLLM's fraction, or TGI's tokens held against the pool of 10000 tokens."""
    m = engines.for_engine(engine)
    labels = engine_labels(engine)
    if m.kv_capacity is None:
        return [(series(m.kv_used.name, labels), values)]
    scaled = " ".join(_scale(v, 10000) for v in values.split())
    return [(series(m.kv_used.name, labels), scaled), (series(m.kv_capacity.name, labels), "10000x100")]


def _scale(term: str, factor: float) -> str:
    value, _, count = term.partition("x")
    return f"{float(value) * factor:g}" + (f"x{count}" if count else "")


def finished(engine: str, per_min: float, errors_per_min: float = 0, minutes: int = 70, *, kind: str = "") -> list:
    """Request counters: `per_min` good requests a minute and `errors_per_min` the server failed."""
    m = engines.for_engine(engine)
    labels = engine_labels(engine)
    if engine == "vllm":
        out = [(series(m.finished.name, {**labels, "finished_reason": "stop"}), f"0+{per_min:g}x{minutes}")]
        out += [
            (series(m.finished.name, {**labels, "finished_reason": r}), f"0+{errors_per_min:g}x{minutes}")
            for r in ("error",)
        ]
        return out
    total = per_min + errors_per_min
    out = [(series(m.finished.name, labels), f"0+{total:g}x{minutes}")]
    if errors_per_min:
        out.append((series(m.errors.name, {**labels, "err": kind or "generation"}), f"0+{errors_per_min:g}x{minutes}"))
    return out


def latency(engine: str, kind: str, t: Thresholds, miss: list[tuple[float, int]]) -> list[tuple[str, str]]:
    """A latency histogram where, minute after minute, a share `miss` of 100 requests a minute is slower
    than the SLO: (share, minutes) segments in order."""
    m = engines.for_engine(engine)
    hist = m.ttft if kind == "ttft" else m.itl
    target = (t.slo.ttft_ms if kind == "ttft" else t.slo.itl_ms) or 0
    edge = engines.bucket_at_or_below(hist, target / 1000)
    labels = engine_labels(engine)
    good, total, good_terms, total_terms = 0.0, 0.0, [], []
    for share, minutes in miss:
        good_terms.append(f"{good:g}+{100 * (1 - share):g}x{minutes}")
        total_terms.append(f"{total:g}+100x{minutes}")
        good += 100 * (1 - share) * (minutes + 1)
        total += 100 * (minutes + 1)
    name = hist.family.name
    return [
        (series(f"{name}_bucket", {**labels, "le": repr(edge)}), " ".join(good_terms)),
        (series(f"{name}_count", labels), " ".join(total_terms)),
    ]


def burn(t: Thresholds, *windows: str) -> list[dict[str, str]]:
    severity = {long: sev for long, _, _, sev in t.slo.burn_windows()}
    return [{**ONLY_STACK, "severity": severity[w], "long_window": w} for w in windows]


def engine_cases(engine: str, t: Thresholds) -> list[Case]:
    m = engines.for_engine(engine)
    el = engine_labels(engine)
    up = series("up", ENGINE)
    waiting = series(m.waiting.name, el)
    high, full = t.kv_high.value, t.kv_full.value
    cases = [
        Case("down a minute fires", "LLMEngineDown", [(up, "1x5 0x5")], "8m", [{**ENGINE, "severity": "critical"}]),
        Case("down for less than the hold is pending", "LLMEngineDown", [(up, "1x5 0x5")], "6m"),
        Case("answering does not fire", "LLMEngineDown", [(up, "1x10")], "8m"),
        Case(
            "a target gone from the scrape fires",
            "LLMEngineDown",
            [(series("up", {**ENGINE, "deployctl_stack": "other"}), "1x10")],
            "3m",
            [{"deployctl_stack": STACK, "deployctl_role": "engine", "severity": "critical"}],
        ),
        Case(
            "counters that only grow do not",
            "LLMEngineRestarted",
            [*finished(engine, 10, minutes=10)[:1], (up, "1x20")],
            "9m",
        ),
        Case(
            "a restart (counter reset) fires",
            "LLMEngineRestarted",
            [
                (
                    series(m.finished.name, {**el, "finished_reason": "stop"} if engine == "vllm" else el),
                    "0+10x10 0+10x5",
                ),
                (up, "1x20"),
            ],
            "14m",
            [{**ONLY_STACK, "severity": "warning"}],
        ),
        Case(
            "a target that went away and came back fires",
            "LLMEngineRestarted",
            [(up, "1x5 0 0 1x10")],
            "12m",
            [{**ONLY_STACK, "severity": "warning"}],
        ),
        Case(
            "KV above the plan's threshold for 10 minutes fires",
            "LLMKVCacheHigh",
            kv(engine, f"{high + 0.05:.3f}x15"),
            "12m",
            [{**ONLY_STACK, "severity": "warning"}],
        ),
        Case("KV below the threshold does not", "LLMKVCacheHigh", kv(engine, f"{high - 0.05:.3f}x15"), "12m"),
        Case(
            "KV high with a dip does not, yet",
            "LLMKVCacheHigh",
            kv(engine, f"{high + 0.05:.3f}x5 0.1 {high + 0.05:.3f}x10"),
            "12m",
        ),
        Case(
            "a full KV cache for 2 minutes fires",
            "LLMKVCacheFull",
            kv(engine, "0.5x5 0.995x10"),
            "9m",
            [{**ONLY_STACK, "severity": "critical"}],
            annotations=[
                {
                    "summary": f"KV cache of {STACK} full (99.5%).",
                    "description": _description(t, "LLMKVCacheFull"),
                    "runbook": "docs/monitoring.md#llmkvcachefull",
                }
            ],
        ),
        Case("KV just under full does not", "LLMKVCacheFull", kv(engine, f"{full - 0.01:.3f}x15"), "12m"),
        Case(
            "a queue that never empties for 5 minutes fires",
            "LLMRequestsWaiting",
            [(waiting, "3x10")],
            "7m",
            [{**ONLY_STACK, "severity": "warning"}],
        ),
        Case("a queue that empties does not", "LLMRequestsWaiting", [(waiting, "3x3 0 3x10")], "7m"),
        Case(
            "2% of requests failing, for the hour, fires",
            "LLMErrorRateHigh",
            finished(engine, 98, 2),
            "65m",
            [{**ONLY_STACK, "severity": "critical"}],
        ),
        Case("0.5% failing does not", "LLMErrorRateHigh", finished(engine, 99.5, 0.5), "65m"),
        Case("no request at all does not", "LLMErrorRateHigh", finished(engine, 0, 0), "65m"),
        Case(
            "a 5-minute burst alone does not (the hour's ratio stays under 1%)",
            "LLMErrorRateHigh",
            _burst(engine),
            "65m",
        ),
    ]
    if engine == "tgi":
        cases.append(
            Case(
                "TGI: invalid requests are the client's, not the server's",
                "LLMErrorRateHigh",
                finished(engine, 90, 10, kind="validation"),
                "65m",
            )
        )
    if m.preemptions is not None:
        pre = series(m.preemptions.name, el)
        cases += [
            Case(
                "preempting for 10 minutes fires",
                "LLMRequestsPreempted",
                [(pre, "0+5x20")],
                "15m",
                [{**ONLY_STACK, "severity": "warning"}],
            ),
            Case("no preemption does not", "LLMRequestsPreempted", [(pre, "0x20")], "15m"),
        ]
    for kind in ("ttft", "itl"):
        name = f"LLM{kind.upper()}SLOBurn"
        cases += [
            Case(
                "30% missing the SLO for 70 minutes burns every window",
                name,
                latency(engine, kind, t, [(0.30, 70)]),
                "70m",
                burn(t, "1h", "6h", "1d", "3d"),
            ),
            Case(
                "5% missing: a slow burn (tickets, no page)",
                name,
                latency(engine, kind, t, [(0.05, 70)]),
                "70m",
                burn(t, "1d", "3d"),
            ),
            Case(
                "after a fast burn stops, the 5-minute window clears the 1-hour page",
                name,
                latency(engine, kind, t, [(0.30, 60), (0.0, 15)]),
                "75m",
                burn(t, "6h", "1d", "3d"),
            ),
            Case("0.5% missing, within a 1% budget, does not", name, latency(engine, kind, t, [(0.005, 70)]), "70m"),
        ]
    return cases


def _description(t: Thresholds, name: str) -> str:
    (alert,) = [a for a in rules.alerts(t) if a.name == name]
    return str(alert.as_rule()["annotations"]["description"])


def _burst(engine: str) -> list[tuple[str, str]]:
    m = engines.for_engine(engine)
    el = engine_labels(engine)
    if engine == "vllm":
        return [
            (series(m.finished.name, {**el, "finished_reason": "stop"}), "0+100x70"),
            (series(m.finished.name, {**el, "finished_reason": "error"}), "0x59 0+8x10"),
        ]
    return [
        (series(m.finished.name, el), "0+100x59 5900+108x10"),
        (series(m.errors.name, {**el, "err": "generation"}), "0x59 0+8x10"),
    ]


def gpu_cases(t: Thresholds) -> list[Case]:
    b = BOARD
    warn = {**b, "severity": "warning"}
    power, limit = series(gpu.POWER, b), series(gpu.POWER_LIMIT, b)
    temp, slow = series(gpu.TEMPERATURE, b), series(gpu.SLOWDOWN, b)
    used, total = series(gpu.MEMORY_USED, b), series(gpu.MEMORY_TOTAL, b)
    cap = t.power_limit_w or 300
    fs = {**GPU, "path": MODEL_PATH}
    avail, size = series(gpu.FS_AVAIL, fs), series(gpu.FS_SIZE, fs)
    weights = t.disk_free_bytes.value if t.disk_free_bytes else 0
    mem_total = 24564 * 2**20
    return [
        Case(
            "exporter gone 5 minutes fires",
            "LLMGpuExporterDown",
            [(series("up", GPU), "1x3 0x10")],
            "10m",
            [{**GPU, "severity": "warning"}],
        ),
        Case("exporter answering does not", "LLMGpuExporterDown", [(series("up", GPU), "1x10")], "10m"),
        Case(
            "a GPU NVML cannot read fires",
            "LLMGpuLost",
            [(series(gpu.UP, b), "1x3 0x5")],
            "6m",
            [{**b, "severity": "critical"}],
        ),
        Case("a GPU NVML reads does not", "LLMGpuLost", [(series(gpu.UP, b), "1x8")], "6m"),
        Case(
            "drawing the cap for 30 minutes fires",
            "LLMGpuPowerAtCap",
            [(power, f"{cap - 1:g}x40"), (limit, f"{cap:g}x40")],
            "35m",
            [{**b, "severity": "info"}],
        ),
        Case(
            "drawing well under the cap does not",
            "LLMGpuPowerAtCap",
            [(power, f"{cap * 0.8:g}x40"), (limit, f"{cap:g}x40")],
            "35m",
        ),
        Case(
            "5 °C under the board's slowdown temperature fires",
            "LLMGpuHot",
            [(temp, "84x10"), (slow, "88x10")],
            "7m",
            [{**b, "severity": "warning"}],
        ),
        Case("well under the slowdown temperature does not", "LLMGpuHot", [(temp, "80x10"), (slow, "88x10")], "7m"),
        Case(
            "a board that does not say: 83 °C fires",
            "LLMGpuHot",
            [(temp, "84x10")],
            "7m",
            [{**b, "severity": "warning"}],
        ),
        Case("a board that does not say: 80 °C does not", "LLMGpuHot", [(temp, "80x10")], "7m"),
        Case(
            "a thermal slowdown for 5 minutes fires",
            "LLMGpuThrottled",
            [(series(gpu.THROTTLE, {**b, "reason": "hw_thermal_slowdown"}), "1x10")],
            "7m",
            [{**ONLY_STACK, "instance": b["instance"], "gpu": "0", "uuid": b["uuid"], "severity": "warning"}],
        ),
        Case(
            "the power cap at work is not a throttle alert",
            "LLMGpuThrottled",
            [(series(gpu.THROTTLE, {**b, "reason": "sw_power_cap"}), "1x10")],
            "7m",
        ),
        Case(
            "memory past the plan's room for 10 minutes fires",
            "LLMGpuMemoryFull",
            [(used, f"{mem_total * (t.gpu_memory.value + 0.02):.0f}x15"), (total, f"{mem_total}x15")],
            "12m",
            [warn],
        ),
        Case(
            "memory as the plan has it does not",
            "LLMGpuMemoryFull",
            [(used, f"{mem_total * (t.gpu_memory.value - 0.04):.0f}x15"), (total, f"{mem_total}x15")],
            "12m",
        ),
        Case(
            "a cap other than the plan's fires",
            "LLMGpuPowerLimitNotPlanned",
            [(limit, "450x10")],
            "7m",
            [warn],
        ),
        Case("the planned cap does not", "LLMGpuPowerLimitNotPlanned", [(limit, f"{cap:g}x10")], "7m"),
        Case(
            "less free than the model's size fires",
            "LLMModelDiskLow",
            [(avail, f"{weights * 0.5:.0f}x15"), (size, f"{weights * 40:.0f}x15")],
            "12m",
            [{**fs, "severity": "warning"}],
        ),
        Case(
            "room for another copy does not",
            "LLMModelDiskLow",
            [(avail, f"{weights * 2:.0f}x15"), (size, f"{weights * 4:.0f}x15")],
            "12m",
        ),
        Case(
            "under 5% free fires",
            "LLMModelDiskFull",
            [(avail, f"{weights * 0.5:.0f}x15"), (size, f"{weights * 40:.0f}x15")],
            "12m",
            [{**fs, "severity": "critical"}],
        ),
        Case(
            "20% free does not",
            "LLMModelDiskFull",
            [(avail, f"{weights * 8:.0f}x15"), (size, f"{weights * 40:.0f}x15")],
            "12m",
        ),
    ]


def unit_file(rule_file: Path, cases: list[Case]) -> dict[str, Any]:
    tests = []
    for c in cases:
        expected = []
        for i, labels in enumerate(c.firing):
            alert: dict[str, Any] = {"exp_labels": labels}
            if c.annotations is not None:
                alert["exp_annotations"] = c.annotations[i]
            expected.append(alert)
        tests.append(
            {
                "name": c.title,
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in c.input],
                "alert_rule_test": [{"eval_time": c.at, "alertname": c.alert, "exp_alerts": expected}],
            }
        )
    return {"rule_files": [rule_file.name], "evaluation_interval": "1m", "tests": tests}


def without_annotations(rule_file: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    for group in rule_file["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule["alert"] not in keep:
                rule.pop("annotations", None)
    return rule_file


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_every_alert_fires_and_holds_still_on_synthetic_series(engine: str, tmp_path: Path) -> None:
    t = limits(engine)
    cases = engine_cases(engine, t) + gpu_cases(t)
    rendered = rules.rule_file(t)
    names = {r["alert"] for g in rendered["groups"] for r in g["rules"] if "alert" in r}
    # Every alert the stack has is tested both ways.
    assert {c.alert for c in cases if c.fires} == names
    assert {c.alert for c in cases if not c.fires} == names
    keep = {c.alert for c in cases if c.annotations is not None}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(without_annotations(rendered, keep), sort_keys=False))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(unit_file(tmp_path / "rules.yml", cases), sort_keys=False))
    result = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_unit_test(tmp_path: Path) -> None:
    """The harness can fail: a KV cache under its threshold expected to fire is reported by promtool."""
    t = limits("vllm")
    wrong = Case("wrong", "LLMKVCacheFull", kv("vllm", "0.5x15"), "12m", [{**ONLY_STACK, "severity": "critical"}])
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(without_annotations(rules.rule_file(t), set())))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(unit_file(tmp_path / "rules.yml", [wrong])))
    result = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode != 0 and "LLMKVCacheFull" in result.stdout + result.stderr


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
@pytest.mark.parametrize("percentile", ["p90", "p99"])
def test_rendered_rules_pass_promtool_check(engine: str, percentile: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules.rule_file(limits(engine, percentile=percentile))))
    result = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_p90_objective_leaves_out_the_burn_rate_it_cannot_reach() -> None:
    # 14.4 x a 10% budget is 144% of requests: that window could never fire.
    t = limits("vllm", percentile="p90")
    assert [w[0] for w in t.slo.burn_windows()] == ["6h", "1d", "3d"]
    assert [w[0] for w in limits("vllm").slo.burn_windows()] == ["1h", "6h", "1d", "3d"]
