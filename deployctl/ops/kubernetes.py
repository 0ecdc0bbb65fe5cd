"""`deployctl k8s up/status/down`: a plan's Helm chart installed, checked and removed with helm and kubectl.

helm does the installing (`upgrade --install --wait --atomic`: a rollout that never becomes ready
is rolled back by Helm); kubectl reads what the cluster says about the release's pods, so a
failure comes back as one line naming its cause (no GPU node, image not on the nodes, probe
failing) rather than Helm's "timed out waiting for the condition".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.kube import (
    GPU_RESOURCE,
    INSTANCE_LABEL,
    Cluster,
    Forbidden,
    Kube,
    NotFound,
    ToolError,
    check_release_name,
    explain,
    last_line,
    pods,
    probe_failure,
)
from deployctl.targets import helm as chart

POLL_S = 2.0


class RolloutFailed(DeployctlError):
    """Helm could not bring the release up; it rolled back (or removed a first install: `removed`)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, removed: bool = False) -> None:
        super().__init__(message, hint)
        self.removed = removed


@dataclass
class Watch:
    """Polls the release's pods while helm waits, keeping the last problem seen."""

    kube: Kube
    release: str
    problem: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                states = pods(self.kube, self.release)
            except DeployctlError:
                continue
            problems = [s.problem for s in states if s.problem]
            if problems:
                self.problem = problems[0]
                if "health probe" in self.problem:
                    event = probe_failure(self.kube, {s.name for s in states})
                    if event:
                        self.problem = f"running, but not Ready: {event}"

    def stop(self) -> None:
        self._stop.set()


# -- preflight ------------------------------------------------------------------------------------


def check_cluster(kube: Kube, *, gpus: int, runtime_class: str) -> None:
    """Raise when the cluster cannot run the chart: no node with the GPUs, no such RuntimeClass."""
    try:
        nodes = kube.json("kubectl", "get", "nodes").get("items", [])
    except Forbidden:
        nodes = None  # a namespace-scoped user may not list nodes: the scheduler will say it instead
    if gpus > 0 and nodes is not None:
        offers = {
            n["metadata"]["name"]: int(n.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")) for n in nodes
        }
        if not any(count >= gpus for count in offers.values()):
            seen = ", ".join(f"{name}: {count}" for name, count in sorted(offers.items())) or "no nodes"
            raise EnvironmentProblem(
                f"no GPU node: no node offers {gpus} {GPU_RESOURCE} ({seen})",
                "install the NVIDIA device plugin or GPU Operator, or plan for fewer GPUs per replica",
            )
    if runtime_class:
        try:
            kube.run("kubectl", "get", "runtimeclass", runtime_class, "-o", "name")
        except Forbidden:
            pass
        except NotFound:
            raise EnvironmentProblem(
                f"RuntimeClass {runtime_class!r} does not exist on the cluster",
                "install the GPU Operator (it makes `nvidia`), or pass --runtime-class '' to use the default runtime",
            ) from None


# -- up ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpRequest:
    """What `k8s up` installs: a rendered chart's source and how to install it."""

    source: chart.ChartSource
    release: str
    replicas: int = 1
    runtime_class: str = "nvidia"
    api_key: str | None = None
    values_files: tuple[Path, ...] = ()
    set_values: tuple[str, ...] = ()
    timeout_s: int | None = None


@dataclass(frozen=True)
class UpResult:
    release: str
    namespace: str
    revision: int
    plan_hash: str
    replicas: int
    ready: int
    service: str
    cluster_ip: str
    port: int
    url: str
    port_forward: str
    pods: list[dict[str, Any]]
    dry_run: bool = False
    manifests: list[str] = field(default_factory=list)


def default_timeout(src: chart.ChartSource) -> int:
    """Give helm's --timeout: the plan's start-up budget plus a minute for scheduling and image start."""
    return src.startup_budget_s + 60


def _helm_values(tmp: Path, req: UpRequest) -> list[str]:
    args: list[str] = []
    if req.api_key:
        # A values file (mode 0600, removed after) rather than --set: argv is visible to every user.
        key_file = tmp / "api-key.yaml"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"apiKey": {"value": req.api_key}}, f)
        args += ["--values", str(key_file)]
    for values in req.values_files:
        if not values.is_file():
            raise InputError(f"--values {values}: no such file")
        args += ["--values", str(values.absolute())]
    for item in req.set_values:
        if "=" not in item:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        args += ["--set", item]
    return args


def up(
    cluster: Cluster, req: UpRequest, *, dry_run: bool = False, report: Callable[[str], None] | None = None
) -> UpResult:
    """Install or upgrade the release and wait until every replica is Ready; Helm rolls back a failure."""
    check_release_name(req.release)
    files = chart.render(req.source, replicas=req.replicas, runtime_class=req.runtime_class)
    with tempfile.TemporaryDirectory(prefix="deployctl-chart-") as tmp_name:
        tmp = Path(tmp_name)
        chart_dir = chart.write_chart(files, tmp / "chart")
        values = _helm_values(tmp, req)
        if dry_run:
            return _template(cluster, req, chart_dir, values)
        kube = Kube(cluster)
        check_cluster(kube, gpus=req.source.gpus, runtime_class=req.runtime_class)
        timeout = req.timeout_s or default_timeout(req.source)
        args = ["upgrade", "--install", req.release, str(chart_dir), "--create-namespace", "--wait", "--atomic"]
        args += ["--timeout", f"{timeout}s", *values]
        if report:
            report(f"helm upgrade --install {req.release} (waiting up to {timeout}s for {req.replicas} replica(s))")
        _install(kube, req.release, args, timeout)
    return _result(kube, req.release, req.source.plan_hash)


def _install(kube: Kube, release: str, args: list[str], timeout: int) -> None:
    watch = Watch(kube, release)
    thread = threading.Thread(target=watch.loop, daemon=True)
    thread.start()
    proc = kube.start("helm", *args)
    try:
        _, stderr = proc.communicate(timeout=timeout + 120)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    finally:
        watch.stop()
        thread.join(timeout=10)
    if proc.returncode == 0:
        return
    err = rollout_failure(release, proc.returncode, stderr, watch.problem)
    if isinstance(err, RolloutFailed) and err.removed:
        _wait_gone(kube, release, timeout_s=60)
    raise err


def rollout_failure(release: str, returncode: int, stderr: str, problem: str | None) -> DeployctlError:
    """Give the one-line error for a failed `helm upgrade --install --atomic`, with what Helm did about it."""
    err = explain(ToolError(["helm", "upgrade"], returncode, stderr))
    if not isinstance(err, ToolError):
        return err
    why = problem or last_line(stderr)
    if "an error occurred while rolling back the release" in stderr:
        return RolloutFailed(
            f"the upgrade of {release} did not become ready: {why}",
            "Helm's rollback to the previous revision did not become ready in --timeout either: "
            "see `deployctl k8s status`, then `helm rollback` or `deployctl k8s up` again with a longer --timeout",
        )
    if "has been rolled back" in stderr:
        return RolloutFailed(
            f"the upgrade of {release} did not become ready: {why}", "Helm rolled it back: the previous revision serves"
        )
    if "has been uninstalled" in stderr:
        return RolloutFailed(
            f"the install of {release} did not become ready: {why}",
            "Helm removed it: nothing is left behind",
            removed=True,
        )
    return RolloutFailed(f"helm could not install {release}: {why}")


def _template(cluster: Cluster, req: UpRequest, chart_dir: Path, values: list[str]) -> UpResult:
    """Render the manifests locally (`helm template`): nothing is sent to the cluster."""
    if not shutil.which("helm"):
        raise EnvironmentProblem("helm is not installed", "see docs/kubernetes.md")
    cmd = ["helm", "template", req.release, str(chart_dir), "--namespace", cluster.namespace, *values]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise explain(ToolError(cmd, done.returncode, done.stderr))
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    name = _fullname(docs, req.release)
    return UpResult(
        release=req.release,
        namespace=cluster.namespace,
        revision=0,
        plan_hash=req.source.plan_hash,
        replicas=req.replicas,
        ready=0,
        service=name,
        cluster_ip="",
        port=req.source.service_port,
        url=f"http://{name}.{cluster.namespace}.svc:{req.source.service_port}",
        port_forward=_forward(cluster.namespace, name, req.source.service_port),
        pods=[],
        dry_run=True,
        manifests=[f"{d['kind']}/{d['metadata']['name']}" for d in docs],
    )


def _fullname(docs: list[dict[str, Any]], release: str) -> str:
    services = [d["metadata"]["name"] for d in docs if d.get("kind") == "Service"]
    return services[0] if services else release


def _forward(namespace: str, service: str, port: int) -> str:
    return f"kubectl -n {namespace} port-forward svc/{service} {port}:{port}"


def _result(kube: Kube, release: str, plan_hash: str) -> UpResult:
    st = status(kube.cluster, release)
    return UpResult(
        release=release,
        namespace=kube.cluster.namespace,
        revision=st.revision,
        plan_hash=st.plan_hash or plan_hash,
        replicas=st.replicas,
        ready=st.ready,
        service=st.service,
        cluster_ip=st.cluster_ip,
        port=st.port,
        url=st.url,
        port_forward=st.port_forward,
        pods=st.pods,
    )


# -- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    release: str
    namespace: str
    revision: int
    helm_status: str
    chart: str
    app_version: str
    plan_hash: str
    replicas: int
    ready: int
    service: str
    cluster_ip: str
    port: int
    endpoints: int
    url: str
    port_forward: str
    pods: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.helm_status == "deployed" and self.ready >= self.replicas > 0 and self.endpoints >= self.ready


def status(cluster: Cluster, release: str) -> Status:
    """Give the release's Helm status, its Deployment's readiness, its pods and where its Service is."""
    check_release_name(release)
    kube = Kube(cluster)
    info = kube.json("helm", "status", release)
    selector = f"{INSTANCE_LABEL}={release}"
    deploys = kube.json("kubectl", "get", "deployments", "-l", selector).get("items", [])
    services = kube.json("kubectl", "get", "services", "-l", selector).get("items", [])
    replicas = sum(d.get("spec", {}).get("replicas", 0) for d in deploys)
    ready = sum(d.get("status", {}).get("readyReplicas", 0) for d in deploys)
    plan_hash = next((d["metadata"].get("labels", {}).get("ai.deployctl/plan-hash", "") for d in deploys), "")
    service, cluster_ip, port, endpoints = release, "", 0, 0
    if services:
        svc = services[0]
        service = svc["metadata"]["name"]
        cluster_ip = svc.get("spec", {}).get("clusterIP", "")
        port = svc.get("spec", {}).get("ports", [{}])[0].get("port", 0)
        try:
            ep = kube.json("kubectl", "get", "endpoints", service)
            endpoints = sum(len(s.get("addresses", [])) for s in ep.get("subsets") or [])
        except NotFound:
            endpoints = 0
    meta = info.get("chart", {}).get("metadata", {}) if isinstance(info.get("chart"), dict) else {}
    return Status(
        release=release,
        namespace=cluster.namespace,
        revision=int(info.get("version", 0)),
        helm_status=str(info.get("info", {}).get("status", "unknown")),
        chart=f"{meta.get('name', '?')}-{meta.get('version', '?')}",
        app_version=str(meta.get("appVersion", "")),
        plan_hash=plan_hash,
        replicas=replicas,
        ready=ready,
        service=service,
        cluster_ip=cluster_ip,
        port=port,
        endpoints=endpoints,
        url=f"http://{service}.{cluster.namespace}.svc:{port}",
        port_forward=_forward(cluster.namespace, service, port),
        pods=[p.as_dict() for p in pods(kube, release)],
    )


# -- down -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownResult:
    release: str
    namespace: str
    removed: list[str]
    left: list[str]
    dry_run: bool


def down(cluster: Cluster, release: str, *, timeout_s: int = 120, dry_run: bool = False) -> DownResult:
    """Uninstall the release and wait until none of its pods is left."""
    check_release_name(release)
    kube = Kube(cluster)
    manifest = kube.run("helm", "get", "manifest", release)
    removed = [f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(manifest) if d]
    if dry_run:
        return DownResult(release, cluster.namespace, removed, [], True)
    kube.run("helm", "uninstall", release, "--wait", "--timeout", f"{timeout_s}s", timeout=timeout_s + 30)
    left = _wait_gone(kube, release, timeout_s=timeout_s)
    return DownResult(release, cluster.namespace, removed, [f"Pod/{name}" for name in left], False)


def _wait_gone(kube: Kube, release: str, *, timeout_s: float) -> list[str]:
    """Wait until the release has no pod left (the garbage collector removes them after their
    Deployment); give the names of those still there at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = [p.name for p in pods(kube, release, terminating=True)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [p.name for p in pods(kube, release, terminating=True)]
    return left


# -- from a spec ----------------------------------------------------------------------------------


def chart_source(spec: Any, *, simulate: bool, faults: dict[str, str] | None = None) -> chart.ChartSource:
    """Give the chart's inputs for a spec: the plan per replica, from a GPU profile (the nodes are not here)."""
    from deployctl.ops import planning

    if not simulate and spec.gpu_model is None:
        raise InputError(
            "a plan for a cluster needs the nodes' GPU model",
            "pass --gpu-model (e.g. rtx4090); each replica gets --gpus of them",
        )
    plan = planning.make_plan(spec, simulate=simulate)
    return chart.source_from_plan(plan, simulate=simulate, faults=faults)


def render_chart(
    spec: Any,
    out_dir: Path,
    *,
    simulate: bool,
    faults: dict[str, str] | None = None,
    replicas: int = 1,
    runtime_class: str = "nvidia",
) -> tuple[Path, chart.ChartSource]:
    """Write the spec's Helm chart to `out_dir` and give its path and what it was rendered from."""
    src = chart_source(spec, simulate=simulate, faults=faults)
    files = chart.render(src, replicas=replicas, runtime_class=runtime_class)
    return chart.write_chart(files, out_dir), src
