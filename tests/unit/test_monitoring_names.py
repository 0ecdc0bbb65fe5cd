"""Every `vllm:` name a rule or a dashboard reads is one real vLLM serves, at both pinned releases.

- 0.32.0 (the default image's release): against /metrics recorded from the real engine, vLLM's CPU
  build (tests/data/monitoring/vllm-0.32.0-metrics.txt, made by record_vllm_metrics.py beside it);
  its bucket edges and finish reasons are held to deployctl/engines/vllm.py too.
- 0.30.0: against the families its wheel declares (tests/data/monitoring/vllm-0.30.0-families.txt,
  read from vllm/v1/metrics/ in the wheel; no CPU build of 0.30.0 was run here).
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import pytest
from helpers.monitoring import limits

from deployctl.engines import vllm
from deployctl.monitoring import dashboards, engines, rules
from deployctl.monitoring.facts import parse

DATA = Path(__file__).parents[1] / "data" / "monitoring"
RECORDED = parse((DATA / "vllm-0.32.0-metrics.txt").read_text())
FAMILIES_030 = {
    line.strip() for line in (DATA / "vllm-0.30.0-families.txt").read_text().splitlines() if not line.startswith("#")
}
NAME = re.compile(r"(vllm:[a-zA-Z0-9_:]*)")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def vllm_names_used() -> set[str]:
    """Give every vllm: series name in the rules and dashboards, over each SLO combination they render."""
    exprs: list[str] = []
    for ttft, itl, pct in product((None, 500.0), (None, 50.0), ("p90", "p99")):
        t = limits("vllm", ttft_ms=ttft, itl_ms=itl, percentile=pct)
        exprs += [r["expr"] for g in rules.rule_file(t)["groups"] for r in g["rules"]]
        exprs += [q for d in dashboards.dashboards(t) for q in d.queries()]
    return {n for e in exprs for n in NAME.findall(e)}


def test_the_rules_and_dashboards_read_vllm_names() -> None:
    used = vllm_names_used()
    assert {"vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket"} <= used
    assert len(used) >= 12


def test_every_vllm_name_used_is_served_by_real_vllm_0_32_0() -> None:
    missing = sorted(vllm_names_used() - set(RECORDED))
    assert not missing, f"not on real vLLM 0.32.0's /metrics: {missing}"


def test_every_vllm_name_used_is_declared_by_vllm_0_30_0() -> None:
    def family(name: str) -> str:
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in FAMILIES_030:
                return name.removesuffix(suffix)
        return name

    missing = sorted(n for n in vllm_names_used() if family(n) not in FAMILIES_030)
    assert not missing, f"not declared in vLLM 0.30.0's vllm/v1/metrics: {missing}"


def _edges(name: str) -> tuple[float, ...]:
    return tuple(sorted({float(labels["le"]) for labels, _ in RECORDED[f"{name}_bucket"] if labels["le"] != "+Inf"}))


@pytest.mark.parametrize("latency", [vllm.METRICS.ttft, vllm.METRICS.itl, vllm.METRICS.e2e, vllm.METRICS.queue])
def test_the_bucket_edges_are_the_real_engine_s(latency: engines.Latency) -> None:
    assert _edges(latency.family.name) == latency.buckets


def test_every_finish_reason_has_a_series_from_the_start_and_le_is_written_as_python_writes_it() -> None:
    reasons = {labels["finished_reason"] for labels, _ in RECORDED["vllm:request_success_total"]}
    assert reasons == set(vllm.VLLM_FINISHED_REASONS)
    les = {labels["le"] for labels, _ in RECORDED["vllm:time_to_first_token_seconds_bucket"]}
    assert "1.0" in les and "0.5" in les  # what the rules' le matcher must take (also "1", Prometheus 3's form)
    assert re.fullmatch(engines.le_matcher(1.0), "1.0")
