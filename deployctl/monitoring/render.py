"""The monitoring files of one stack, byte for byte: Prometheus's configuration and rules, the thresholds,
Grafana's provisioning and dashboards. One flat folder (the stack directory holds files, not folders).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from deployctl import __version__
from deployctl.monitoring import dashboards, rules, scrape
from deployctl.monitoring.thresholds import Thresholds

PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"  # the last 2.x: the rule syntax Debian's promtool 2.42 checks
GRAFANA_IMAGE = "grafana/grafana:11.3.0"
EXPORTER_IMAGE = f"deployctl/gpu-exporter:{__version__}"
DATASOURCE_UID = "deployctl-prometheus"
PROMETHEUS_FILE = "prometheus.yml"
THRESHOLDS_FILE = "thresholds.json"
DASHBOARDS_IN_GRAFANA = "/var/lib/grafana/dashboards/deployctl"


def profile_images(monitoring: Any, *, simulate: bool) -> list[str]:
    """Give the images the Compose monitoring profile runs (none when the spec leaves it off): what a bundle carries."""
    if not monitoring.enabled:
        return []
    exporter = [EXPORTER_IMAGE] if monitoring.gpu_exporter and not simulate else []
    return [PROMETHEUS_IMAGE, GRAFANA_IMAGE, *exporter]


def yaml_file(data: Any, header: str) -> bytes:
    """Give data as a YAML file whose first line is a comment saying what it is."""
    return (f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, width=1000)).encode()


def thresholds_json(t: Thresholds) -> bytes:
    """Give the thresholds as JSON: `health` judges /metrics by the same numbers the alerts use."""
    return (json.dumps(asdict(t), indent=2, sort_keys=True) + "\n").encode()


def thresholds_from_json(data: bytes) -> Thresholds:
    """Give the thresholds `thresholds_json` wrote."""
    from deployctl.monitoring.thresholds import Slo, Threshold

    raw = json.loads(data)
    for key, value in list(raw.items()):
        if isinstance(value, dict) and set(value) == {"value", "reason"}:
            raw[key] = Threshold(**value)
    raw["slo"] = Slo(**raw["slo"])
    return Thresholds(**raw)


def grafana_provisioning(prometheus_url: str) -> dict[str, bytes]:
    """Give Grafana's datasource and dashboard provider files (for /etc/grafana/provisioning/...)."""
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "deployctl",
                "folder": "deployctl",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "options": {"path": DASHBOARDS_IN_GRAFANA},
            }
        ],
    }
    return {
        "grafana-datasources.yml": yaml_file(datasource, "Grafana datasource, rendered by deployctl"),
        "grafana-dashboards.yml": yaml_file(provider, "Grafana dashboard provider, rendered by deployctl"),
    }


@dataclass(frozen=True)
class Where:
    """Where the monitoring runs: the engine's and exporter's addresses as Prometheus reaches them."""

    targets: scrape.Targets
    prometheus_url: str  # as Grafana reaches Prometheus
    with_gpus: bool
    interval: str = "15s"  # scrape and rule evaluation


def _header(t: Thresholds) -> str:
    return f"rendered by deployctl {__version__} for stack {t.stack}; change the spec and render again"


def rules_and_dashboards(t: Thresholds, *, with_gpus: bool) -> dict[str, bytes]:
    """Give rules.yml and dashboard-<name>.json: what the Compose profile, `monitor` and the chart all carry."""
    out = {scrape.RULES_FILE: yaml_file(rules.rule_file(t, gpus=with_gpus), f"Alert rules, {_header(t)}")}
    for name, data in dashboards.dashboard_files(t, with_gpus=with_gpus).items():
        out[f"dashboard-{name.removeprefix(f'deployctl-{t.stack}-')}"] = data
    return out


def files(t: Thresholds, where: Where) -> dict[str, bytes]:
    """Give every monitoring file of the stack: name -> bytes (the same input always gives the same bytes)."""
    prometheus = scrape.config(
        t.stack, t.engine, where.targets, scrape_interval=where.interval, evaluation_interval=where.interval
    )
    return {
        PROMETHEUS_FILE: yaml_file(prometheus, f"Prometheus configuration, {_header(t)}"),
        THRESHOLDS_FILE: thresholds_json(t),
        **grafana_provisioning(where.prometheus_url),
        **rules_and_dashboards(t, with_gpus=where.with_gpus),
    }
