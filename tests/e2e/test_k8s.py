"""deployctl k8s on a real single-node cluster (API server, scheduler, controller-manager, kubelet on containerd).

The cluster is started once for the session and removed at the end (tests/helpers/kubecluster.py).
The simulator stands in for the engine; the node advertises fake nvidia.com/gpu capacity and an
`nvidia` RuntimeClass exists, as the GPU Operator makes them.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers.k8stools import path_with_tools, tool
from helpers.kubecluster import KubeCluster

from deployctl.engines.simulator import SIM_IMAGE

from .conftest import deployctl

# Short probe periods: the simulator is Ready in about two seconds.
FAST = ("--set", "probes.readiness.periodSeconds=1", "--set", "probes.liveness.periodSeconds=2")


@pytest.fixture(scope="session")
def cluster(sim_image: str) -> Iterator[KubeCluster]:
    for name in ("kube-apiserver", "kubelet", "helm", "kubectl"):
        tool(name)
    started = time.monotonic()
    c = KubeCluster(Path(tempfile.mkdtemp(prefix="dctl-k8s-", dir="/tmp")))
    try:
        c.start()
        c.import_image(sim_image)
        print(f"\ncluster ready in {time.monotonic() - started:.1f}s")
        yield c
    finally:
        problems = c.stop()
        assert not problems, f"the test cluster left behind: {problems}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "deployctl.yaml").write_text("name: e2e-llm\n")
    return tmp_path


def k8s(c: KubeCluster, cwd: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": str(c.kubeconfig), "PATH": path_with_tools()}
    t = time.monotonic()
    done = deployctl("k8s", *args, env=env, cwd=cwd, timeout=timeout)
    print(f"k8s {args[0]}: {time.monotonic() - t:.1f}s")
    return done


def pods(c: KubeCluster, ns: str, release: str) -> list[dict[str, Any]]:
    out = c.kubectl("-n", ns, "get", "pods", "-l", f"app.kubernetes.io/instance={release}", "-o", "json").stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def endpoint_urls(c: KubeCluster, ns: str, service: str) -> list[str]:
    """Give the URLs behind a Service's endpoints (pod IPs on the test bridge, reachable from this host)."""
    ep = json.loads(c.kubectl("-n", ns, "get", "endpoints", service, "-o", "json").stdout)
    return [
        f"http://{a['ip']}:{p['port']}"
        for s in ep.get("subsets") or []
        for a in s.get("addresses", [])
        for p in s["ports"]
    ]


def manifests(chart_dir: Path, *sets: str) -> list[dict[str, Any]]:
    args = [tool("helm"), "template", "e2e", str(chart_dir)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def server_dry_run(c: KubeCluster, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return c.kubectl("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(doc), check=False)


def test_server_dry_run_catches_what_schemas_do_not(cluster: KubeCluster, workdir: Path) -> None:
    render = deployctl("render", "--target", "helm", "--simulate", "-o", "chart", cwd=workdir)
    assert render.returncode == 0, render.stderr
    docs = manifests(workdir / "chart")
    for doc in docs:
        ok = server_dry_run(cluster, doc)
        assert ok.returncode == 0, ok.stderr
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    # A selector that does not match the pod's labels: schemas accept it, the API server does not.
    broken = json.loads(json.dumps(deploy))
    broken["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    refused = server_dry_run(cluster, broken)
    assert refused.returncode != 0
    assert "selector` does not match template `labels`" in refused.stderr
    # A RuntimeClass the cluster does not have: the RuntimeClass admission refuses the pod.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "e2e-dry-run", "namespace": "default"},
        "spec": {**deploy["spec"]["template"]["spec"], "runtimeClassName": "nvidia-missing"},
    }
    refused = server_dry_run(cluster, pod)
    assert refused.returncode != 0
    assert 'RuntimeClass "nvidia-missing" not found' in refused.stderr
    pod["spec"]["runtimeClassName"] = "nvidia"
    assert server_dry_run(cluster, pod).returncode == 0


def test_up_upgrade_rollback_status_down(cluster: KubeCluster, workdir: Path) -> None:
    ns = "llm"
    started = time.monotonic()
    up = k8s(cluster, workdir, "up", "--simulate", "-n", ns, "--replicas", "2", *FAST, "--json")
    assert up.returncode == 0, up.stderr
    first = json.loads(up.stdout)
    assert first["ok"] and first["ready"] == 2 and first["revision"] == 1
    assert first["url"] == f"http://e2e-llm.{ns}.svc:8080" and first["cluster_ip"]
    print(f"first install Ready in {time.monotonic() - started:.1f}s")
    running = pods(cluster, ns, "e2e-llm")
    assert len(running) == 2
    assert {p["spec"]["runtimeClassName"] for p in running} == {"nvidia"}
    assert all(p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1" for p in running)

    status = k8s(cluster, workdir, "status", "-n", ns, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    st = json.loads(status.stdout)
    assert st["ok"] and st["endpoints"] == 2 and st["helm_status"] == "deployed"
    # The model answers behind the Service: each endpoint (no kube-proxy here, so not the ClusterIP).
    urls = endpoint_urls(cluster, ns, "e2e-llm")
    assert len(urls) == 2
    for url in urls:
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        assert requests.get(f"{url}/info", timeout=10).json()["max_total_tokens"] == 8192

    # An upgrade with a changed value rolls out: a new plan, a new revision, new pods.
    changed = k8s(cluster, workdir, "up", "--simulate", "-n", ns, "--max-total-tokens", "4096", *FAST, "--json")
    assert changed.returncode == 0, changed.stderr
    second = json.loads(changed.stdout)
    assert second["revision"] == 2 and second["plan_hash"] != first["plan_hash"] and second["ready"] == 1
    args = pods(cluster, ns, "e2e-llm")[0]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-total-tokens") + 1] == "4096"

    # An upgrade whose pod never becomes Ready is rolled back by Helm, and deployctl says so.
    # --timeout bounds Helm's wait for the broken revision and then its rollback's wait for the previous
    # one. On a 2-core machine with two busy loops and the real engine beside, that pod was not Ready in
    # 15 s, nor in 30 s: 60 s leaves it room.
    broken = k8s(
        cluster, workdir, "up", "--simulate", "-n", ns, "--sim-fault", "never-healthy", *FAST, "--timeout", "60"
    )
    assert broken.returncode == 1, broken.stderr
    (line,) = [s for s in broken.stderr.splitlines() if s.startswith("error:")]
    assert "did not become ready" in line and "Helm rolled it back" in line
    assert "probe" in line  # the cause: the health probe fails
    after = json.loads(k8s(cluster, workdir, "status", "-n", ns, "--json").stdout)
    assert after["ok"] and after["plan_hash"] == second["plan_hash"] and after["revision"] == 4

    down = k8s(cluster, workdir, "down", "-n", ns, "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["left"] == []
    gone = k8s(cluster, workdir, "status", "-n", ns)
    assert gone.returncode == 5 and "no such release" in gone.stderr
    assert pods(cluster, ns, "e2e-llm") == []
    helm_list = subprocess.run(
        [tool("helm"), "list", "-A", "-q", f"--kubeconfig={cluster.kubeconfig}"], capture_output=True, text=True
    )
    assert helm_list.stdout.strip() == ""


def test_missing_image_and_missing_runtime_class_are_one_line_each(cluster: KubeCluster, workdir: Path) -> None:
    missing = k8s(
        cluster,
        workdir,
        "up",
        "--simulate",
        "-n",
        "img",
        *("--set", "image.tag=not-imported", "--set", "image.pullPolicy=Never"),  # never reach a registry
        *FAST,
        "--timeout",
        "15",
    )
    assert missing.returncode == 1
    (line,) = [s for s in missing.stderr.splitlines() if s.startswith("error:")]
    repository = SIM_IMAGE.rsplit(":", 1)[0]  # this run's simulator image (tests/conftest.py names it)
    assert f"{repository}:not-imported is not present on node" in line and "Helm removed it" in line
    assert pods(cluster, "img", "e2e-llm") == []

    no_class = k8s(cluster, workdir, "up", "--simulate", "-n", "rc", "--runtime-class", "gpu-runtime")
    assert no_class.returncode == 3
    assert no_class.stderr.strip().splitlines() == [
        "error: RuntimeClass 'gpu-runtime' does not exist on the cluster; install the GPU Operator (it makes `nvidia`), "
        "or pass --runtime-class '' to use the default runtime"
    ]


def test_vllm_simulator_chart_runs_as_the_workload_says(cluster: KubeCluster, tmp_path: Path) -> None:
    """A vLLM chart (simulated) reaches Ready as uid 1000 with a read-only root and HOME on its scratch."""
    (tmp_path / "deployctl.yaml").write_text("name: e2e-vllm\nengine: vllm\n")
    ns = "vllm"
    up = k8s(cluster, tmp_path, "up", "--simulate", "-n", ns, *FAST, "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["ready"] == 1
    try:
        (running,) = pods(cluster, ns, "e2e-vllm")
        spec = running["spec"]
        c = spec["containers"][0]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["ports"][0]["containerPort"] == 8000  # vLLM's own port: unprivileged, not moved
        (url,) = endpoint_urls(cluster, ns, "e2e-vllm")
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        models = requests.get(f"{url}/v1/models", timeout=10).json()
        served = c["args"][c["args"].index("--served-model-name") + 1]
        assert [m["id"] for m in models["data"]] == [served]  # the vLLM API, with the plan's served name
    finally:
        down = k8s(cluster, tmp_path, "down", "-n", ns, "--json")
        assert down.returncode == 0, down.stderr
    assert pods(cluster, ns, "e2e-vllm") == []


# The newest Prometheus Operator CRDs the 1.20 test cluster accepts: from v0.75.0 on they carry `default: ""`
# on name fields, which the 1.20 API server refuses (tests/unit/test_monitoring_helm.py checks v0.93.0's schemas).
MONITORING_CRDS = Path(__file__).parents[1] / "data" / "monitoring" / "crds-v0.72.0"


def test_monitoring_installs_without_the_operator_and_its_objects_come_with_the_crds(
    cluster: KubeCluster, tmp_path: Path
) -> None:
    """monitoring.enabled on a cluster without the Prometheus Operator: the dashboards, nothing of the operator's.
    Once its CRDs are installed, `k8s up` again makes the ServiceMonitor and PrometheusRule, and `k8s down` removes them.
    """
    (tmp_path / "deployctl.yaml").write_text(
        "name: e2e-mon\nengine: vllm\nmonitoring:\n  slo_ttft_ms: 500\n  slo_itl_ms: 50\n"
    )
    ns, on = "mon", ("--set", "monitoring.enabled=true")
    # The label kube-prometheus-stack's Prometheus selects monitors and rules by.
    selected_by = ("--set", "monitoring.serviceMonitor.labels.release=kps")
    selected_by += ("--set", "monitoring.prometheusRule.labels.release=kps")

    def operator_objects() -> dict[str, dict[str, Any]]:
        out = cluster.kubectl("-n", ns, "get", "servicemonitors,podmonitors,prometheusrules", "-o", "json")
        return {f"{o['kind']}/{o['metadata']['name']}": o for o in json.loads(out.stdout)["items"]}

    def api_server_alive() -> bool:
        healthz = cluster.kubectl("get", "--raw", "/healthz", check=False)
        return cluster.procs["kube-apiserver"].poll() is None and healthz.stdout == "ok"

    # What `deployctl monitor` renders for the same spec: the alerts and rule groups the chart must carry.
    assert deployctl("render", "--simulate", cwd=tmp_path).returncode == 0
    monitor = deployctl("monitor", "--no-gpus", "--json", "-o", "mon", cwd=tmp_path)
    assert monitor.returncode == 0, monitor.stderr
    rendered = json.loads(monitor.stdout)
    assert {"LLMEngineDown", "LLMTTFTSLOBurn", "LLMITLSLOBurn"} <= set(rendered["alerts"])
    rule_file = yaml.safe_load((tmp_path / "mon" / "rules.yml").read_text())
    try:
        up = k8s(cluster, tmp_path, "up", "--simulate", "-n", ns, *FAST, *on, "--json")
        assert up.returncode == 0, up.stderr
        dashboards = cluster.kubectl("-n", ns, "get", "configmaps", "-l", "grafana_dashboard=1", "-o", "name")
        assert dashboards.stdout.split() == ["configmap/e2e-mon-dashboard-engine", "configmap/e2e-mon-dashboard-slo"]
        missing = cluster.kubectl("-n", ns, "get", "servicemonitors", check=False)
        assert missing.returncode != 0 and "the server doesn't have a resource type" in missing.stderr

        made = cluster.kubectl("create", "-f", str(MONITORING_CRDS), check=False)
        assert made.returncode == 0, made.stderr
        for crd in ("servicemonitors", "podmonitors", "prometheusrules"):
            cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.monitoring.coreos.com", "--timeout=60s")
        again = k8s(cluster, tmp_path, "up", "--simulate", "-n", ns, *FAST, *on, *selected_by, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["revision"] == 2

        made_now = operator_objects()
        assert set(made_now) == {"ServiceMonitor/e2e-mon", "PrometheusRule/e2e-mon"}  # simulator: no GPU exporter
        monitor_obj, rule = made_now["ServiceMonitor/e2e-mon"], made_now["PrometheusRule/e2e-mon"]
        service = json.loads(cluster.kubectl("-n", ns, "get", "service", "e2e-mon", "-o", "json").stdout)
        assert monitor_obj["metadata"]["labels"] == {**service["metadata"]["labels"], "release": "kps"}
        assert rule["metadata"]["labels"] == {**service["metadata"]["labels"], "release": "kps"}

        # The ServiceMonitor selects the engine's Service, by its labels and its port's name, in this namespace.
        spec = monitor_obj["spec"]
        assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert spec["namespaceSelector"] == {"matchNames": [ns]}
        (endpoint,) = spec["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        # It stamps the labels the rules select the stack's series by, and the chart's engine kind.
        stamped = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
        kind = service["metadata"]["labels"]["app.kubernetes.io/component"]
        assert stamped == {"deployctl_stack": rendered["stack"], "deployctl_role": "engine", "engine_kind": kind}
        exprs = "\n".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
        selected = set(re.findall(r'(deployctl_\w+)="([^"]*)"', exprs))
        assert selected == {("deployctl_stack", "e2e-mon"), ("deployctl_role", "engine")}
        assert selected <= stamped.items()
        # And what it scrapes carries every engine series the rules read.
        ep = json.loads(cluster.kubectl("-n", ns, "get", "endpoints", "e2e-mon", "-o", "json").stdout)
        ((ip, port),) = [
            (a["ip"], p["port"])
            for s in ep["subsets"]
            for a in s["addresses"]
            for p in s["ports"]
            if p["name"] == "http"
        ]
        scraped = requests.get(f"http://{ip}:{port}{endpoint['path']}", timeout=10).text
        families = {line.split("{")[0].split()[0] for line in scraped.splitlines() if line and line[0] != "#"}
        read = set(re.findall(r"\bvllm:\w+", exprs))
        assert read and read <= families

        # The PrometheusRule holds the rule groups `deployctl monitor` writes, every field intact.
        assert rule["spec"] == rule_file
        alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
        assert alerts == set(rendered["alerts"])
        assert api_server_alive()

        down = k8s(cluster, tmp_path, "down", "-n", ns, "--json")
        assert down.returncode == 0, down.stderr
        assert {"ServiceMonitor/e2e-mon", "PrometheusRule/e2e-mon"} <= set(json.loads(down.stdout)["removed"])
        assert operator_objects() == {}
        assert api_server_alive()
    except BaseException:
        k8s(cluster, tmp_path, "down", "-n", ns)  # a check above failed: leave no release behind
        raise
    finally:
        cluster.kubectl("delete", "-f", str(MONITORING_CRDS), "--ignore-not-found", check=False)
    assert pods(cluster, ns, "e2e-mon") == []
    crds = cluster.kubectl("get", "crds", "-o", "name").stdout.split()
    assert not [c for c in crds if c.endswith(".monitoring.coreos.com")]
