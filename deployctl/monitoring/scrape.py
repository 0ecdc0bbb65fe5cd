"""Prometheus's configuration for one stack: scrape the engine's /metrics and the GPU exporter, load the rules.

Every target gets the labels `deployctl_stack` and `deployctl_role` (engine or gpu): the rules and
dashboards select the stack's series by them, so several stacks can share one Prometheus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployctl.monitoring.rules import ENGINE_ROLE, GPU_ROLE, ROLE_LABEL, STACK_LABEL

RULES_FILE = "rules.yml"


@dataclass(frozen=True)
class Targets:
    """Where Prometheus finds the stack's engine(s) and GPU exporter(s), as host:port."""

    engine: tuple[str, ...]
    gpu: tuple[str, ...] = ()


def job_name(stack: str, role: str) -> str:
    return f"deployctl-{stack}-{role}"


def config(
    stack: str,
    engine: str,
    targets: Targets,
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    rule_files: tuple[str, ...] = (RULES_FILE,),
) -> dict[str, Any]:
    """Give prometheus.yml as data: one job for the engine's /metrics, one for the GPU exporter."""
    jobs: list[dict[str, Any]] = [
        {
            "job_name": job_name(stack, ENGINE_ROLE),
            "metrics_path": "/metrics",
            "static_configs": [
                {
                    "targets": list(targets.engine),
                    "labels": {STACK_LABEL: stack, ROLE_LABEL: ENGINE_ROLE, "engine_kind": engine},
                }
            ],
        }
    ]
    if targets.gpu:
        jobs.append(
            {
                "job_name": job_name(stack, GPU_ROLE),
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": list(targets.gpu), "labels": {STACK_LABEL: stack, ROLE_LABEL: GPU_ROLE}}
                ],
            }
        )
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": list(rule_files),
        "scrape_configs": jobs,
    }
