"""Plans, thresholds and Prometheus series for the monitoring tests."""

from __future__ import annotations

from typing import Any

from deployctl import gpus as profiles
from deployctl import models, planner, spec
from deployctl.monitoring import thresholds
from deployctl.plan import Plan

STACK = "mon"
MODEL_PATH = "/srv/models/Llama-3.1-70B-Instruct-AWQ"


def plan(engine: str = "vllm", *, gpus: int = 2, power: int | None = 300, name: str = STACK) -> Plan:
    """A 70B AWQ plan on two RTX 4090s (8B GPTQ on one), with its model folder and, by default, a 300 W cap.

    AWQ, not the act-order GPTQ 70B preset: every vLLM release from 0.30 refuses act-order GPTQ (plan22's
    engine rules), and both engines must plan the same model here."""
    preset = "llama-3.1-8b-instruct-gptq" if gpus == 1 else "llama-3.1-70b-instruct-awq"
    facts = models.preset(preset).model_copy(update={"path": MODEL_PATH, "name": MODEL_PATH.rsplit("/", 1)[1]})
    text = f"name: {name}\nengine: {engine}\ngpus: {gpus}\n"
    if power:
        text += f"power:\n  limit_watts: {power}\n"
    return planner.plan(spec.parse(text), facts, profiles.host("rtx4090", gpus))


def limits(engine: str = "vllm", **slo: Any) -> thresholds.Thresholds:
    """The thresholds of `plan(engine)` with a TTFT SLO of 500 ms and an ITL SLO of 50 ms at p99 (or `slo`)."""
    chosen = {"ttft_ms": 500.0, "itl_ms": 50.0, "percentile": "p99", **slo}
    return thresholds.from_plan(plan(engine), thresholds.Slo(**chosen))


def series(name: str, labels: dict[str, str]) -> str:
    """Give a series in PromQL notation: name{a="b", ...}."""
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def render_compose(
    p: Plan, *, simulate: bool = False, api_key: str | None = None, monitoring: spec.Monitoring | None = None
) -> dict[str, bytes]:
    """Give the stack's files of `p` through the one render path (targets.render), with `monitoring`."""
    from deployctl import targets

    return targets.render(
        p, "compose", targets.RenderOptions(simulate=simulate, api_key=api_key, monitoring=monitoring)
    )


def render_chart(
    p: Plan, *, simulate: bool = False, replicas: int = 1, monitoring: spec.Monitoring | None = None
) -> dict[str, bytes]:
    """Give the chart's files of `p` through the one render path (targets.render), with `monitoring`."""
    from deployctl import targets

    return targets.render(p, "helm", targets.RenderOptions(simulate=simulate, replicas=replicas, monitoring=monitoring))
