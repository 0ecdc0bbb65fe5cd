"""Render a Plan into a Helm chart: Chart.yaml, values.yaml (the plan's choices), a schema, templates.

The chart's templates are fixed files (deployctl/templates/helm/templates/); only Chart.yaml and
values.yaml are rendered from the plan, so `helm template` with other values gives what a site
asks for and `values.schema.json` refuses what cannot work.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployctl import __version__, engines, templating
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import InputError
from deployctl.monitoring.gpu import EXPORTER_PORT
from deployctl.monitoring.render import EXPORTER_IMAGE
from deployctl.planner.types import Plan

if TYPE_CHECKING:
    from deployctl.spec import Monitoring

CHART_FILES = "templates/helm"
MARKER = "Chart.yaml"
# Kubernetes names: a release name becomes part of Service and Deployment names (DNS-1123 label),
# and Helm caps release names at 53 characters (helm/pkg/chartutil/validate_name.go).
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RELEASE_NAME_MAX = 53
# The simulator listens above 1024 so it runs as a user with every capability dropped: TGI's
# port 80 is moved to this one (the simulator reads TGI's PORT variable, deployctl/sim/config.py).
SIM_PORT = 8080
PRIVILEGED_PORTS = 1024  # ports below it need NET_BIND_SERVICE outside Docker's namespaced sysctl
# Stands in for the API key when the Workload is built: the chart never holds the key, a Kubernetes
# Secret does (apiKey.existingSecret or apiKey.value); only the variable's name is taken.
KEY_IN_SECRET = "<in a Kubernetes Secret>"
# Start-up probe period for a real engine; the budget (the plan's load time) sets the failure count.
STARTUP_PERIOD_S = 10
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


@dataclass(frozen=True)
class Scratch:
    """A writable in-memory folder of the engine's (engines/security.py), as a Kubernetes quantity."""

    path: str
    size: str


@dataclass(frozen=True)
class ChartSource:
    """What a chart needs from a plan, engine-neutral: read from the Workload the Compose target renders too."""

    name: str
    engine: str
    image: str
    args: list[str]
    env: dict[str, str]
    port: int
    health_path: str
    model_mount: str
    model_host_path: str | None
    shm_size: str | None
    gpus: int
    gpu_name: str
    weight_bytes: int
    startup_budget_s: int
    api_key_required: bool
    api_key_env: str
    service_port: int
    plan_hash: str
    simulate: bool
    run_as_user: int
    run_as_group: int
    scratch: list[Scratch]
    memory_limit: str
    stop_grace_s: int
    # The alert rules and dashboards (deployctl/monitoring/), as chart files under monitoring/.
    monitoring_files: dict[str, bytes] = field(default_factory=dict)


def monitoring_files(plan: Plan, monitoring: Monitoring | None, *, simulate: bool) -> dict[str, bytes]:
    """Give the chart's monitoring/ files: rules and dashboards from the plan and the spec's SLOs."""
    from deployctl.monitoring import render, thresholds

    slo = (
        thresholds.Slo(monitoring.slo_ttft_ms, monitoring.slo_itl_ms, monitoring.slo_percentile) if monitoring else None
    )
    files = render.rules_and_dashboards(thresholds.from_plan(plan, slo), with_gpus=not simulate)
    return {f"monitoring/{name}": data for name, data in files.items()}


def source_from_plan(
    plan: Plan,
    *,
    simulate: bool,
    sim_image: str = SIM_IMAGE,
    faults: dict[str, str] | None = None,
    monitoring: Monitoring | None = None,
) -> ChartSource:
    """Give the chart's inputs from a plan (the simulator in place of the engine when `simulate`).

    Every decision (image, arguments, environment, probe, shared memory, secrets, user, writable
    paths, limits) is the Workload's (targets/workload.py), the same one the Compose target renders;
    only what Kubernetes needs in its own words is translated here.
    """
    from deployctl.targets import workload

    wl = workload.from_plan(
        plan,
        simulate=simulate,
        api_key=KEY_IN_SECRET if plan.api_key else None,
        sim_image=sim_image,
        faults=faults,
    )
    env = dict(wl.env)
    port = wl.container_port
    if simulate and port < PRIVILEGED_PORTS:
        env["PORT"] = str(SIM_PORT)  # the simulator reads TGI's PORT variable
        port = SIM_PORT
    user, _, group = wl.security.user.partition(":")
    mount = wl.mounts[0] if wl.mounts else None
    (api_key_env,) = {s.env for s in wl.secrets} or {engines.get(plan.engine.kind).api_key_env}
    return ChartSource(
        name=wl.name,
        engine=wl.engine,
        image=wl.image,
        args=list(wl.args),
        env=env,
        port=port,
        health_path=wl.probe.path,
        model_mount=mount.target if mount else plan.model_id,
        # The simulator reads no weights: its chart mounts nothing (no model folder on the nodes).
        model_host_path=mount.source if mount and not simulate else None,
        shm_size=_quantity(wl.shm_size) if wl.shm_size else None,
        gpus=plan.num_shard,
        gpu_name=plan.gpus[0].name,
        weight_bytes=plan.model.weight_bytes,
        startup_budget_s=wl.probe.start_budget_s,
        api_key_required=plan.api_key,
        api_key_env=api_key_env,
        service_port=plan.port,
        plan_hash=wl.plan_hash,
        simulate=simulate,
        run_as_user=int(user),
        run_as_group=int(group or user),
        scratch=[Scratch(s.path, _mebibytes(s.size_bytes)) for s in wl.security.scratch],
        memory_limit=_mebibytes(wl.security.memory_bytes),
        stop_grace_s=wl.stop_grace_s,
        monitoring_files=monitoring_files(plan, monitoring, simulate=simulate),
    )


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


def _resources(src: ChartSource) -> dict[str, Any]:
    # The limit is the Workload's memory ceiling (engines/security.py: weights, shards, scratch and
    # /dev/shm, whose tmpfs pages count against the container's cgroup in Kubernetes as in Docker).
    # Kubernetes has no per-container pids limit (the kubelet's podPidsLimit is a node setting).
    if src.simulate:
        # The simulator: one Python process, measured at about 60 MiB resident under load.
        return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": src.memory_limit}}
    # Not measured on a cluster: a floor for TGI's launcher and router plus one Python process per shard
    # (torch with a CUDA context, a few GiB each). The weights are mmap'd (page cache, not counted here).
    return {"requests": {"cpu": "2", "memory": f"{2 + 3 * src.gpus}Gi"}, "limits": {"memory": src.memory_limit}}


def context(src: ChartSource, *, replicas: int = 1, runtime_class: str = "nvidia") -> dict[str, Any]:
    """Give the values Chart.yaml and values.yaml are rendered from; every decision is made here."""
    if replicas < 0:
        raise InputError(f"--replicas {replicas}: must be 0 or more")
    if runtime_class and not RELEASE_NAME.match(runtime_class):
        raise InputError(f"runtime class {runtime_class!r} is not a Kubernetes name")
    image = ImageRef.parse(src.image)
    period = 1 if src.simulate else STARTUP_PERIOD_S
    weight_gb = src.weight_bytes / 1e9
    return {
        "version": __version__,
        "plan_hash": src.plan_hash,
        "simulate": src.simulate,
        "chart_name": src.name.replace("_", "-"),
        "description": f"{src.engine} serving {Path(src.model_mount).name} on {src.gpus} GPU(s) per replica (deployctl)",
        "engine": src.engine,
        "app_version": image.digest or image.tag,
        "replicas": replicas,
        "gpus": src.gpus,
        "gpu_name": src.gpu_name,
        "runtime_class": runtime_class,
        "image": asdict(image),
        "args": src.args,
        "env": dict(sorted(src.env.items())),
        "port": src.port,
        "health_path": src.health_path,
        "model_source": "hostPath" if src.model_host_path else "none",
        "model_mount": src.model_mount,
        "model_host_path": src.model_host_path or "",
        # The weights plus a tenth for tokenizer, configs and file-system overhead; at least 1 GiB.
        "pvc_size": f"{max(1, math.ceil(src.weight_bytes * 1.1 / 2**30))}Gi",
        "weight_gb": f"{weight_gb:.1f}",
        "api_key_required": src.api_key_required,
        "api_key_env": src.api_key_env,
        "shm_size": src.shm_size,
        "startup_budget_s": src.startup_budget_s,
        "startup_period": period,
        "startup_failures": max(1, math.ceil(src.startup_budget_s / period)),
        "resources": _resources(src),
        "run_as_non_root": src.run_as_user != 0,
        "run_as_user": src.run_as_user,
        "run_as_group": src.run_as_group,
        "user_reason": (
            "TGI >= 3.1 runs only as root (its Python lives under /root, issue #3082), with every capability dropped."
            if src.run_as_user == 0
            else "The engine's image runs as any uid (engines/security.py)."
        ),
        "scratch": [{"path": s.path, "sizeLimit": s.size} for s in src.scratch],
        "stop_grace": src.stop_grace_s,
        "tolerations": [GPU_TOLERATION],
        "service_port": src.service_port,
        "monitoring_stack": src.name,
        "gpu_exporter": not src.simulate,
        "exporter_image": asdict(ImageRef.parse(EXPORTER_IMAGE)),
        "exporter_port": EXPORTER_PORT,
    }


def _fixed_files() -> dict[str, bytes]:
    root = resources.files("deployctl").joinpath(CHART_FILES)
    out = {"values.schema.json": root.joinpath("values.schema.json").read_bytes()}
    for entry in sorted(root.joinpath("templates").iterdir(), key=lambda e: e.name):
        out[f"templates/{entry.name}"] = entry.read_bytes()
    return out


def render(src: ChartSource, *, replicas: int = 1, runtime_class: str = "nvidia") -> dict[str, bytes]:
    """Give the chart's files, byte for byte; the same input always gives the same bytes."""
    ctx = context(src, replicas=replicas, runtime_class=runtime_class)
    return {
        "Chart.yaml": templating.render("helm/Chart.yaml.j2", **ctx).encode(),
        "values.yaml": templating.render("helm/values.yaml.j2", **ctx).encode(),
        **_fixed_files(),
        **src.monitoring_files,
    }


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


def check_release_name(name: str) -> str:
    """Give `name` if Helm and Kubernetes accept it as a release name; an InputError otherwise."""
    if len(name) > RELEASE_NAME_MAX or not RELEASE_NAME.match(name):
        raise InputError(
            f"release name {name!r} is not a Kubernetes name",
            f"use lower-case letters, digits and '-', at most {RELEASE_NAME_MAX} characters (--release NAME)",
        )
    return name
