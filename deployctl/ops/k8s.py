"""`deployctl k8s up/status/down`: a plan's Helm chart installed, checked and removed with helm and kubectl.

helm does the installing (`upgrade --install --wait --atomic`: a rollout that never becomes ready
is rolled back by Helm); kubectl reads what the cluster says about the release's pods, so a
failure comes back as one line naming its cause (no GPU node, image not on the nodes, probe
failing) rather than Helm's "timed out waiting for the condition".
"""

from __future__ import annotations

import json
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
from deployctl.targets import helm as chart

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_LABEL = "app.kubernetes.io/instance"
POLL_S = 2.0
# Container waiting reasons that mean the image is not on the node (kubelet's images/types.go).
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


class NotFound(DeployctlError):
    """The release is not installed in that namespace."""

    exit_code = 5


class RolloutFailed(DeployctlError):
    """Helm could not bring the release up; it rolled back (or removed a first install: `removed`)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, removed: bool = False) -> None:
        super().__init__(message, hint)
        self.removed = removed


@dataclass(frozen=True)
class Cluster:
    """Where to talk to: kubeconfig (None: $KUBECONFIG or ~/.kube/config), context and namespace."""

    namespace: str = "default"
    context: str | None = None
    kubeconfig: str | None = None

    def __post_init__(self) -> None:
        if not chart.RELEASE_NAME.match(self.namespace) or len(self.namespace) > 63:
            raise InputError(
                f"namespace {self.namespace!r} is not a Kubernetes name", "use lower-case letters, digits and '-'"
            )

    def flags(self, tool: str) -> list[str]:
        out = ["--namespace", self.namespace]
        if self.context:
            out += ["--kube-context" if tool == "helm" else "--context", self.context]
        if self.kubeconfig:
            out += ["--kubeconfig", self.kubeconfig]
        return out


class Forbidden(EnvironmentProblem):
    """The kubeconfig's user may not do this (RBAC)."""


class ToolError(DeployctlError):
    """helm or kubectl failed: the command, its exit status and its last words."""

    def __init__(self, command: list[str], returncode: int, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{command[0]} {command[1]} failed: {last_line(self.stderr)}")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def explain(err: ToolError) -> DeployctlError:
    """Give the one-line error a user acts on for a helm/kubectl failure."""
    text = err.stderr
    low = text.lower()
    where = "check KUBECONFIG, --kubeconfig and --kube-context"
    if "values don't meet the specifications of the schema" in text:
        problems = [line.strip("- ").strip() for line in text.splitlines() if line.startswith("- ")]
        return InputError("values refused by the chart's values.schema.json: " + "; ".join(problems))
    if "no configuration has been provided" in low or ("kubeconfig" in low and "no such file" in low):
        return EnvironmentProblem("no kubeconfig: deployctl does not know which cluster to use", where)
    if "context" in low and "does not exist" in low:
        return InputError(f"kube context: {last_line(text)}", "kubectl config get-contexts lists them")
    if any(s in low for s in ("connection refused", "unreachable", "no such host", "i/o timeout", "unable to connect")):
        return EnvironmentProblem(f"cannot reach the Kubernetes cluster: {last_line(text)}", where)
    if "unauthorized" in low or "forbidden" in low:
        return Forbidden(
            f"the cluster refused the request: {last_line(text)}", "check the kubeconfig's user and its RBAC roles"
        )
    if "release: not found" in low:
        return NotFound("no such release in that namespace", "helm list -A shows every release")
    if "(notfound)" in low:
        return NotFound(last_line(text).removeprefix("Error from server (NotFound): "))
    return err


def _check_kubeconfig(cluster: Cluster) -> None:
    """Raise when no kubeconfig can be found (helm would otherwise try http://localhost:8080)."""
    if cluster.kubeconfig:
        if not Path(cluster.kubeconfig).is_file():
            raise InputError(f"--kubeconfig {cluster.kubeconfig}: no such file")
        return
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return  # inside a pod: the service account's in-cluster config
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = paths or [str(Path.home() / ".kube" / "config")]
    if not any(Path(p).is_file() for p in paths):
        raise EnvironmentProblem(
            f"no kubeconfig: deployctl does not know which cluster to use (looked for {', '.join(paths)})",
            "set KUBECONFIG or pass --kubeconfig FILE",
        )


class Kube:
    """The one transport to the cluster: helm and kubectl, run with the same kubeconfig, context, namespace."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        _check_kubeconfig(cluster)
        for tool in ("helm", "kubectl"):
            if not shutil.which(tool):
                raise EnvironmentProblem(
                    f"{tool} is not installed",
                    "see docs/kubernetes.md; deployctl drives the cluster through helm and kubectl",
                )

    def run(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        cmd = [tool, *args, *self.cluster.flags(tool)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(
                f"{tool} {args[0]} did not answer in {timeout:.0f}s", "is the cluster reachable?"
            ) from None
        if done.returncode != 0:
            raise explain(ToolError(cmd, done.returncode, done.stderr))
        return done.stdout

    def json(self, tool: str, *args: str) -> Any:
        return json.loads(self.run(tool, *args, "-o", "json"))

    def start(self, tool: str, *args: str) -> subprocess.Popen[str]:
        cmd = [tool, *args, *self.cluster.flags(tool)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- what the cluster says about the release -------------------------------------------------------


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    restarts: int
    node: str
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pod_state(pod: dict[str, Any]) -> PodState:
    """Give a pod's state and, when it is not Ready, the reason in the user's words."""
    status = pod.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    containers = status.get("containerStatuses", [])
    ready = conditions.get("Ready", {}).get("status") == "True"
    problem = None
    scheduled = conditions.get("PodScheduled", {})
    if scheduled.get("status") == "False":
        msg = scheduled.get("message", "")
        if GPU_RESOURCE in msg:
            problem = f"no node has the free GPUs it asks for ({msg})"
        else:
            problem = f"not scheduled: {msg or scheduled.get('reason', 'unknown')}"
    for c in containers:
        waiting = c.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in IMAGE_REASONS:
            problem = f"image {c.get('image')} is not present on node {pod['spec'].get('nodeName', '?')} ({reason})"
        elif reason == "CrashLoopBackOff":
            last = (c.get("lastState", {}).get("terminated") or {}).get("exitCode")
            problem = f"the engine keeps exiting (exit code {last}, {c.get('restartCount', 0)} restarts)"
        elif reason and reason != "ContainerCreating":
            problem = f"{reason}: {waiting.get('message', '')}".strip(": ")
        elif c.get("state", {}).get("running") and not c.get("ready"):
            problem = problem or "running, but its health probe does not pass yet"
    if not problem and status.get("reason"):
        problem = f"{status['reason']}: {status.get('message', '')}"
    return PodState(
        name=pod["metadata"]["name"],
        phase=status.get("phase", "Unknown"),
        ready=ready,
        restarts=sum(c.get("restartCount", 0) for c in containers),
        node=pod["spec"].get("nodeName") or "-",
        problem=None if ready else problem,
    )


def pods(kube: Kube, release: str, *, terminating: bool = False) -> list[PodState]:
    """Give the release's pods (and, with `terminating`, those being deleted too)."""
    data = kube.json("kubectl", "get", "pods", "-l", f"{INSTANCE_LABEL}={release}")
    items = data.get("items", [])
    return [pod_state(p) for p in items if terminating or not p["metadata"].get("deletionTimestamp")]


def probe_failure(kube: Kube, pod_names: set[str]) -> str | None:
    """Give the last probe-failure event of these pods, if any (why a running pod is not Ready)."""
    try:
        events = kube.json("kubectl", "get", "events", "--field-selector", "type=Warning,reason=Unhealthy")
    except DeployctlError:
        return None
    mine = [e for e in events.get("items", []) if e.get("involvedObject", {}).get("name") in pod_names]
    if not mine:
        return None
    last = max(mine, key=lambda e: e.get("lastTimestamp") or "")
    return str(last.get("message", "")).strip()


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
    chart.check_release_name(req.release)
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
    chart.check_release_name(release)
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
    chart.check_release_name(release)
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
    from deployctl.ops import plan as deploy

    if not simulate and spec.gpu_model is None:
        raise InputError(
            "a plan for a cluster needs the nodes' GPU model",
            "pass --gpu-model (e.g. rtx4090); each replica gets --gpus of them",
        )
    plan = deploy.make_plan(spec, simulate=simulate)
    return chart.source_from_plan(plan, simulate=simulate, faults=faults, monitoring=spec.monitoring)


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
