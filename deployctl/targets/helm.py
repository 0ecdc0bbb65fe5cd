"""The Helm target: a plan as a chart (Chart.yaml, values.yaml, a schema, templates), run on a cluster as
a Helm release through kube/ (helm upgrade --install --wait --atomic, helm status, helm uninstall).

The chart's templates are fixed files (deployctl/templates/helm/templates/); only Chart.yaml,
values.yaml and values.schema.json (which names the engine's key variable) are rendered from the
plan, so `helm template` with other values gives what a site asks for and the schema refuses what
cannot work.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployctl import __version__, templating
from deployctl.errors import InputError
from deployctl.kube import INSTANCE_LABEL, PLAN_HASH_LABEL, RELEASE_NAME, Kube, NotFound, PodState
from deployctl.monitoring.gpu import EXPORTER_PORT
from deployctl.monitoring.render import EXPORTER_IMAGE
from deployctl.targets.base import RenderContext

if TYPE_CHECKING:
    from deployctl.plan import Plan
    from deployctl.spec import Monitoring

CHART_FILES = "templates/helm"
MARKER = "Chart.yaml"
# The simulator listens above 1024 so it runs as a user with every capability dropped: TGI's
# port 80 is moved to this one (the simulator reads TGI's PORT variable, deployctl/sim/config.py).
SIM_PORT = 8080
PRIVILEGED_PORTS = 1024  # ports below it need NET_BIND_SERVICE outside Docker's namespaced sysctl
# Start-up probe period for a real engine; the budget (the plan's load time) sets the failure count.
STARTUP_PERIOD_S = 10
POLL_S = 2.0  # how often the cluster is asked again while waiting
# The chart's own schema (templates/helm/values.schema.json.j2, "replicas") allows 0-1000; the CLI's bound is that.
MAX_REPLICAS = 1000
# The toleration the GPU Operator's and most sites' GPU node taints ask for.
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way a site overrides it: registry, repository, tag or digest."""

    registry: str
    repository: str
    tag: str
    digest: str

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        name, _, digest = image.partition("@")
        tag = ""
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, _, tag = name.rpartition(":")
        first, _, rest = name.partition("/")
        # Docker's rule (distribution/reference normalize.go): a first part with a dot or a port, or
        # `localhost`, is a registry host.
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest, tag or "latest", digest)
        return cls("", name, tag or "latest", digest)


def monitoring_files(plan: Plan, monitoring: Monitoring | None, *, simulate: bool) -> dict[str, bytes]:
    """Give the chart's monitoring/ files: rules and dashboards from the plan and the spec's SLOs (none for an
    engine whose metric names deployctl does not know: its chart renders, without rules or dashboards)."""
    from deployctl.monitoring import engines, render, thresholds

    if not engines.known(plan.engine.kind):
        return {}

    slo = (
        thresholds.Slo(monitoring.slo_ttft_ms, monitoring.slo_itl_ms, monitoring.slo_percentile) if monitoring else None
    )
    files = render.rules_and_dashboards(thresholds.from_plan(plan, slo), with_gpus=not simulate)
    return {f"monitoring/{name}": data for name, data in files.items()}


def _mebibytes(size: int) -> str:
    """Give bytes as a Kubernetes quantity in whole MiB, rounded up ("1536Mi"), or in GiB when whole ("2Gi")."""
    mib = -(-size // 2**20)
    return f"{mib // 1024}Gi" if mib and mib % 1024 == 0 else f"{mib}Mi"


def _quantity(docker_size: str) -> str:
    """Give a Docker size ("1gb", "512m") as a Kubernetes quantity ("1Gi", "512Mi")."""
    m = re.fullmatch(r"(\d+)\s*([kmg]?)b?", docker_size.strip().lower())
    if not m:
        raise InputError(f"shm size {docker_size!r} is not a size like 1gb")
    return m.group(1) + {"": "", "k": "Ki", "m": "Mi", "g": "Gi"}[m.group(2)]


def _resources(simulate: bool, gpus: int, memory_limit: str) -> dict[str, Any]:
    # The limit is the Workload's memory ceiling (engines/security.py: weights, shards, scratch and
    # /dev/shm, whose tmpfs pages count against the container's cgroup in Kubernetes as in Docker).
    # Kubernetes has no per-container pids limit (the kubelet's podPidsLimit is a node setting).
    if simulate:
        # The simulator: one Python process, measured at about 60 MiB resident under load.
        return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": memory_limit}}
    # Not measured on a cluster: a floor for TGI's launcher and router plus one Python process per shard
    # (torch with a CUDA context, a few GiB each). The weights are mmap'd (page cache, not counted here).
    return {"requests": {"cpu": "2", "memory": f"{2 + 3 * gpus}Gi"}, "limits": {"memory": memory_limit}}


def service_port(context: RenderContext) -> int:
    """Give the port the chart's Service listens on: the plan's port."""
    return context.plan.port


def startup_budget_s(context: RenderContext) -> int:
    """Give how long the engine's start-up may take (the plan's load time) before its probes fail."""
    return context.workload.probe.start_budget_s


def variables(context: RenderContext) -> dict[str, Any]:
    """Give the values Chart.yaml and values.yaml are rendered from, in Kubernetes' words; every decision is
    the Workload's (targets/workload.py), the same one the Compose target renders; only what Kubernetes
    needs in its own words is translated here."""
    plan, w, options = context.plan, context.workload, context.options
    replicas, runtime_class, simulate = options.replicas, options.runtime_class, options.simulate
    if not 0 <= replicas <= MAX_REPLICAS:
        raise InputError(f"--replicas {replicas:g}: must be 0 to {MAX_REPLICAS} (the chart's schema)")
    if runtime_class and not RELEASE_NAME.match(runtime_class):
        raise InputError(f"runtime class {runtime_class!r} is not a Kubernetes name")
    env = dict(w.env)
    port = w.container_port
    if simulate and port < PRIVILEGED_PORTS:
        env["PORT"] = str(SIM_PORT)  # the simulator reads TGI's PORT variable
        port = SIM_PORT
    user, _, group = w.security.user.partition(":")
    run_as_user, run_as_group = int(user), int(group or user)
    mount = w.mounts[0] if w.mounts else None
    model_mount = mount.target if mount else plan.model_id
    # The simulator reads no weights: its chart mounts nothing (no model folder on the nodes).
    model_host_path = mount.source if mount and not simulate else None
    (api_key_env,) = {s.env for s in w.secrets} or {plan.engine.api_key_env}
    gpus = plan.num_shard
    weight_bytes = plan.model.weight_bytes
    budget = startup_budget_s(context)
    image = ImageRef.parse(w.image)
    period = 1 if simulate else STARTUP_PERIOD_S
    return {
        "version": __version__,
        "plan_hash": w.plan_hash,
        "simulate": simulate,
        "chart_name": w.name.replace("_", "-"),
        "description": f"{w.engine} serving {Path(model_mount).name} on {gpus} GPU(s) per replica (deployctl)",
        "engine": w.engine,
        "app_version": image.digest or image.tag,
        "replicas": replicas,
        "gpus": gpus,
        "gpu_name": plan.gpus[0].name,
        "runtime_class": runtime_class,
        "image": asdict(image),
        "args": list(w.args),
        "env": dict(sorted(env.items())),
        "port": port,
        "health_path": w.probe.path,
        "model_source": "hostPath" if model_host_path else "none",
        "model_mount": model_mount,
        "model_host_path": model_host_path or "",
        # The weights plus a tenth for tokenizer, configs and file-system overhead; at least 1 GiB.
        "pvc_size": f"{max(1, math.ceil(weight_bytes * 1.1 / 2**30))}Gi",
        "weight_gb": f"{weight_bytes / 1e9:.1f}",
        "api_key_required": plan.api_key,
        "api_key_env": api_key_env,
        "shm_size": _quantity(w.shm_size) if w.shm_size else None,
        "startup_budget_s": budget,
        "startup_period": period,
        "startup_failures": max(1, math.ceil(budget / period)),
        "resources": _resources(simulate, gpus, _mebibytes(w.security.memory_bytes)),
        "run_as_non_root": run_as_user != 0,
        "run_as_user": run_as_user,
        "run_as_group": run_as_group,
        "user_reason": w.security.user_reason,
        "scratch": [{"path": s.path, "sizeLimit": _mebibytes(s.size_bytes)} for s in w.security.scratch],
        "stop_grace": w.stop_grace_s,
        "tolerations": [GPU_TOLERATION],
        "service_port": service_port(context),
        "monitoring_stack": w.name,
        "gpu_exporter": not simulate,
        "exporter_image": asdict(ImageRef.parse(EXPORTER_IMAGE)),
        "exporter_port": EXPORTER_PORT,
    }


def _fixed_files() -> dict[str, bytes]:
    root = resources.files("deployctl").joinpath(CHART_FILES)
    out = {}
    for entry in sorted(root.joinpath("templates").iterdir(), key=lambda e: e.name):
        out[f"templates/{entry.name}"] = entry.read_bytes()
    return out


def package(files: dict[str, bytes]) -> tuple[str, bytes]:
    """Give the chart as Helm packages it (NAME-VERSION.tgz, files under NAME/), byte for byte the same each time."""
    import gzip
    import io
    import tarfile

    import yaml

    meta = yaml.safe_load(files["Chart.yaml"])
    name, version = meta["name"], meta["version"]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(files):
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size, info.mode, info.mtime = len(files[rel]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[rel]))
    return f"{name}-{version}.tgz", gzip.compress(raw.getvalue(), mtime=0)


def write_chart(files: dict[str, bytes], out_dir: Path) -> Path:
    """Write the chart as `out_dir`, replacing a chart deployctl wrote there whole or not at all."""
    from deployctl.stackdir import write_tree

    return write_tree(files, out_dir, marker=MARKER, what="chart directory")


@dataclass(frozen=True)
class HelmRelease:
    """A Helm release on a cluster: where the Helm target's up, status and down act.

    `chart_dir`, `values` (helm's --values/--set arguments) and `timeout_s` are what `up` installs.
    """

    kube: Kube
    name: str
    chart_dir: Path | None = None
    values: tuple[str, ...] = ()
    timeout_s: int = 300

    @property
    def selector(self) -> str:
        return f"{INSTANCE_LABEL}={self.name}"


@dataclass(frozen=True)
class ReleaseFacts:
    """Where a release serves and how ready it is: what `k8s up` and `k8s status` both report."""

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
    pods: list[PodState]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReleaseStatus(ReleaseFacts):
    """What `k8s status` shows: besides the facts, Helm's state and chart and the Service's endpoints."""

    helm_status: str
    chart: str
    app_version: str
    endpoints: int

    @property
    def ok(self) -> bool:
        return self.helm_status == "deployed" and self.ready >= self.replicas > 0 and self.endpoints >= self.ready


def port_forward(namespace: str, service: str, port: int) -> str:
    """Give the kubectl command that reaches the Service from this host."""
    return f"kubectl -n {namespace} port-forward svc/{service} {port}:{port}"


def pods(release: HelmRelease, *, terminating: bool = False) -> list[PodState]:
    """Give the release's pods (and, with `terminating`, those being deleted too)."""
    found = release.kube.pods(release.selector)
    return [p.state() for p in found if terminating or not p.metadata.deletion_timestamp]


class Helm:
    """The Helm target: a chart rendered from the plan, installed as a release through kube/."""

    name = "helm"

    def render(self, context: RenderContext) -> dict[str, bytes]:
        """Give the chart's files, byte for byte; the same context always gives the same bytes."""
        ctx = variables(context)
        return {
            "Chart.yaml": templating.render("helm/Chart.yaml.j2", **ctx).encode(),
            "values.yaml": templating.render("helm/values.yaml.j2", **ctx).encode(),
            # The schema refuses the engine's key variable in plain env: the key comes from a Secret.
            "values.schema.json": templating.render("helm/values.schema.json.j2", **ctx).encode(),
            **_fixed_files(),
            # The alert rules and dashboards (deployctl/monitoring/), as chart files under monitoring/.
            **monitoring_files(context.plan, context.options.monitoring, simulate=context.options.simulate),
        }

    def up(self, place: HelmRelease) -> None:
        """Install or upgrade the release and wait until every replica is Ready (Helm rolls back a failure)."""
        if place.chart_dir is None:
            raise InputError(f"release {place.name}: no chart to install")
        place.kube.install(place.name, place.chart_dir, place.values, timeout_s=place.timeout_s)

    def status(self, place: HelmRelease) -> ReleaseStatus:
        """Give the release's Helm status, its Deployment's readiness, its pods and where its Service is."""
        kube, namespace = place.kube, place.kube.cluster.namespace
        info = kube.release(place.name)
        deploys = kube.deployments(place.selector)
        services = kube.services(place.selector)
        service, cluster_ip, port, endpoints = place.name, "", 0, 0
        if services:
            svc = services[0]
            service, cluster_ip, port = svc.metadata.name, svc.spec.cluster_ip, svc.port
            try:
                endpoints = kube.endpoints(service).ready_addresses
            except NotFound:
                endpoints = 0
        meta = info.chart.metadata
        return ReleaseStatus(
            release=place.name,
            namespace=namespace,
            revision=info.version,
            helm_status=info.info.status,
            chart=f"{meta.name}-{meta.version}",
            app_version=meta.app_version,
            plan_hash=next((d.metadata.labels.get(PLAN_HASH_LABEL, "") for d in deploys), ""),
            replicas=sum(d.spec.replicas for d in deploys),
            ready=sum(d.status.ready_replicas for d in deploys),
            service=service,
            cluster_ip=cluster_ip,
            port=port,
            endpoints=endpoints,
            url=f"http://{service}.{namespace}.svc:{port}",
            port_forward=port_forward(namespace, service, port),
            pods=pods(place),
        )

    def down(self, place: HelmRelease) -> list[str]:
        """Uninstall the release and wait until none of its pods is left; give those still there at the deadline."""
        place.kube.uninstall(place.name, timeout_s=place.timeout_s)
        return [f"Pod/{name}" for name in wait_gone(place, timeout_s=place.timeout_s)]


def wait_gone(release: HelmRelease, *, timeout_s: float) -> list[str]:
    """Wait until the release has no pod left (the garbage collector removes them after their
    Deployment); give the names of those still there at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = [p.name for p in pods(release, terminating=True)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [p.name for p in pods(release, terminating=True)]
    return left


HELM = Helm()
