"""The chart's monitoring: lint, template with and without the Prometheus Operator's API, strict schemas
(Kubernetes' own for built-in kinds; the operator's CRDs, tests/data/monitoring/crds, for its kinds)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helpers.monitoring import plan, render_chart
from helpers.promtools import tool as prom_tool

from deployctl import spec
from deployctl.targets import helm

from .test_helm import run_helm

KUBE_VERSIONS = ("1.28.0", "1.33.0")
CRDS = Path(__file__).parents[1] / "data" / "monitoring" / "crds"
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
OPERATOR_API = ("--api-versions", "monitoring.coreos.com/v1")
ON = ("--set", "monitoring.enabled=true")


def chart(tmp_path: Path, engine: str = "vllm", simulate: bool = False) -> Path:
    m = spec.Monitoring(slo_ttft_ms=500, slo_itl_ms=50)
    return helm.write_chart(render_chart(plan(engine), simulate=simulate, replicas=2, monitoring=m), tmp_path / "chart")


def template(chart_dir: Path, *args: str) -> list[dict[str, Any]]:
    out = run_helm("template", "rel", str(chart_dir), "--namespace", "llm", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def crd_schema(kind: str) -> dict[str, Any]:
    """Give the CRD's v1 schema, made strict: an object that lists its properties takes no others."""
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
            return _strict(version["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        open_object = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
        if node.get("type") == "object" and "properties" in node and not open_object:
            node["additionalProperties"] = False
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] in OPERATOR_KINDS:
        # Not check_schema: the CRDs hold Go regexes ("^(?i)(abort|warn)?$") Python compiles only where used.
        jsonschema.Draft7Validator(crd_schema(doc["kind"])).validate(doc)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
@pytest.mark.parametrize("simulate", [False, True], ids=["engine", "simulator"])
def test_the_chart_with_monitoring_lints_templates_and_validates_strictly(
    tmp_path: Path, engine: str, simulate: bool
) -> None:
    chart_dir = chart(tmp_path, engine, simulate)
    lint = run_helm("lint", "--strict", str(chart_dir), *ON)
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    with_operator = template(chart_dir, *ON, *OPERATOR_API, "--set", "networkPolicy.enabled=true")
    kinds = [d["kind"] for d in with_operator]
    expected = {"ServiceMonitor", "PrometheusRule", "ConfigMap"} | (set() if simulate else {"DaemonSet", "PodMonitor"})
    assert expected <= set(kinds)
    assert kinds.count("ConfigMap") == (2 if simulate else 3)  # SLO overview, engine (and the GPUs')
    for doc in with_operator:
        validate(doc)


def test_monitoring_is_off_by_default_and_needs_the_operator_s_crds(tmp_path: Path) -> None:
    chart_dir = chart(tmp_path)
    assert {d["kind"] for d in template(chart_dir, *OPERATOR_API)} == {"Deployment", "Service"}
    without = {d["kind"] for d in template(chart_dir, *ON)}
    assert not without & OPERATOR_KINDS  # a cluster without the CRDs gets none of their objects
    assert {"ConfigMap", "DaemonSet"} <= without


def test_the_monitors_select_the_engine_and_the_exporter_and_label_the_stack(tmp_path: Path) -> None:
    docs = template(chart(tmp_path), *ON, *OPERATOR_API)
    by_kind = {d["kind"]: d for d in docs if d["kind"] != "ConfigMap"}
    service, deployment, daemonset = by_kind["Service"], by_kind["Deployment"], by_kind["DaemonSet"]
    monitor, pod_monitor = by_kind["ServiceMonitor"], by_kind["PodMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert pod_monitor["spec"]["selector"]["matchLabels"] == daemonset["spec"]["selector"]["matchLabels"]
    # The engine's Service must not send requests to the exporter's pods.
    exporter_pod = daemonset["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= exporter_pod.items()
    assert deployment["spec"]["selector"]["matchLabels"] != daemonset["spec"]["selector"]["matchLabels"]
    relabel = {r["targetLabel"]: r["replacement"] for r in monitor["spec"]["endpoints"][0]["relabelings"]}
    assert relabel["deployctl_stack"] == "mon" and relabel["deployctl_role"] == "engine"
    relabel = {r["targetLabel"]: r["replacement"] for r in pod_monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert relabel == {"deployctl_stack": "mon", "deployctl_role": "gpu"}


def test_the_exporter_daemonset_reads_every_gpu_without_taking_one(tmp_path: Path) -> None:
    docs = template(chart(tmp_path), *ON)
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert "nvidia.com/gpu" not in str(c["resources"])  # it reads; the engine keeps its GPUs
    assert {e["name"]: e["value"] for e in c["env"]}["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["runtimeClassName"] == "nvidia"
    assert c["args"][-2:] == ["--path", plan("vllm").model.path]  # the model folder's disk
    assert pod["tolerations"] == [helm.GPU_TOLERATION]


def test_the_dashboards_carry_the_sidecar_s_label_and_the_rules_pass_promtool(tmp_path: Path) -> None:
    docs = template(chart(tmp_path), *ON, *OPERATOR_API, "--set", "monitoring.dashboards.labelValue=yes")
    maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "yes" for m in maps)
    for m in maps:
        ((name, text),) = m["data"].items()
        assert name.endswith(".json") and yaml.safe_load(text)["panels"]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run(
        [prom_tool("promtool"), "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    annotations = [r["annotations"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert all(
        "{{ $labels" in a["summary"] or "{{ $value" in a["summary"] for a in annotations[:3]
    )  # Go templates kept


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("monitoring.gpuExporter.port=80", "monitoring.gpuExporter.port"),
        ("monitoring.serviceMonitor.interval=often", "monitoring.serviceMonitor.interval"),
        ("monitoring.dashboards.label=a b", "monitoring.dashboards.label"),
        ("monitoring.stack=Bad Name", "monitoring.stack"),
    ],
)
def test_the_schema_refuses_monitoring_values_that_cannot_work(tmp_path: Path, value: str, says: str) -> None:
    done = run_helm("template", "rel", str(chart(tmp_path)), "--set", value, check=False)
    assert done.returncode != 0 and says.split(".")[-1] in done.stderr


def test_the_crd_check_refuses_what_the_operator_would(tmp_path: Path) -> None:
    docs = template(chart(tmp_path), *ON, *OPERATOR_API)
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["scrapeEvery"] = "15s"  # not a field of ServiceMonitor v1
    with pytest.raises(jsonschema.ValidationError, match="scrapeEvery"):
        validate(monitor)
