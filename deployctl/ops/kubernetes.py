"""`deployctl k8s up/status/down`: a plan's Helm chart installed, checked and removed on a cluster.

The workflow only: the chart comes from the one render path (targets.render), the release is
installed, read and removed by the Helm target (targets/helm.py) through the kube/ transport. helm
does the installing (`upgrade --install --wait --atomic`: a rollout that never becomes ready is
rolled back by Helm) while a watch reads what the cluster says about the release's pods, so a failure
comes back as one line naming its cause (no GPU node, image not on the nodes, probe failing) rather
than Helm's "timed out waiting for the condition".
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from deployctl import kube, targets, tools
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.kube import GPU_RESOURCE, Cluster, Kube, check_release_name
from deployctl.ops import planning
from deployctl.progress import Progress, quiet
from deployctl.spec import DeploymentSpec
from deployctl.targets.helm import (
    HELM,
    POLL_S,
    HelmRelease,
    ReleaseFacts,
    ReleaseStatus,
    pods,
    port_forward,
    wait_gone,
    write_chart,
)


class RolloutFailed(DeployctlError):
    """Helm could not bring the release up; it rolled back (or removed a first install: `removed`)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, removed: bool = False) -> None:
        super().__init__(message, hint)
        self.removed = removed


@dataclass
class Watch:
    """Polls the release's pods while helm waits, keeping the last problem seen."""

    release: HelmRelease
    problem: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                states = pods(self.release)
            except DeployctlError:
                continue
            problems = [s.problem for s in states if s.problem]
            if problems:
                self.problem = problems[0]
                if "health probe" in self.problem:
                    event = probe_failure(self.release.kube, {s.name for s in states})
                    if event:
                        self.problem = f"running, but not Ready: {event}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        """Watch in a thread of its own while the block runs."""
        thread = threading.Thread(target=self.loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)


def cluster(*, namespace: str, context: str | None, kubeconfig: str | None) -> Cluster:
    """Give the cluster that --namespace, --kube-context and --kubeconfig name (an InputError for a bad namespace)."""
    return Cluster(namespace=namespace, context=context, kubeconfig=kubeconfig)


def probe_failure(cluster: Kube, pod_names: set[str]) -> str | None:
    """Give the last probe-failure event of these pods, if any (why a running pod is not Ready)."""
    try:
        events = cluster.events("type=Warning,reason=Unhealthy")
    except DeployctlError:
        return None
    mine = [e for e in events if e.involved_object.name in pod_names]
    if not mine:
        return None
    return max(mine, key=lambda e: e.last_timestamp or "").message.strip()


# -- preflight ------------------------------------------------------------------------------------


def cluster_problems(cluster: Kube, *, gpus: int, runtime_class: str) -> list[DeployctlError]:
    """Give why the cluster cannot run the chart: no node with the GPUs, no such RuntimeClass (each one)."""
    problems: list[DeployctlError] = []
    nodes = cluster.nodes()  # None: a namespace-scoped user may not list nodes; the scheduler will say it
    if gpus > 0 and nodes is not None:
        offers = {n.metadata.name: n.gpus for n in nodes}
        if not any(count >= gpus for count in offers.values()):
            seen = ", ".join(f"{name}: {count}" for name, count in sorted(offers.items())) or "no nodes"
            problems.append(
                EnvironmentProblem(
                    f"no GPU node: no node offers {gpus} {GPU_RESOURCE} ({seen})",
                    "install the NVIDIA device plugin or GPU Operator, or plan for fewer GPUs per replica",
                )
            )
    if runtime_class and cluster.has_runtime_class(runtime_class) is False:
        problems.append(
            EnvironmentProblem(
                f"RuntimeClass {runtime_class!r} does not exist on the cluster",
                "install the GPU Operator (it makes `nvidia`), or pass --runtime-class '' to use the default runtime",
            )
        )
    return problems


def preflight(cluster: Cluster, *, gpus: int, runtime_class: str) -> Kube:
    """Give the connection for an install once every prerequisite holds; one error names each one that does not.

    The kubeconfig, helm and kubectl are checked together; with all three, that the cluster answers;
    once it does, that a node offers the GPUs and that the RuntimeClass exists, together again.
    """
    conn = Kube(cluster)
    conn.check_reachable()
    kube.require(cluster_problems(conn, gpus=gpus, runtime_class=runtime_class))
    return conn


# -- up ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpRequest:
    """What `k8s up` installs and how: the release, its replicas, the site's values, the time it may take."""

    release: str
    simulate: bool = False
    faults: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    runtime_class: str = "nvidia"
    values_files: tuple[Path, ...] = ()
    set_values: tuple[str, ...] = ()
    timeout_s: int | None = None


@dataclass(frozen=True)
class UpResult(ReleaseFacts):
    """The release once every replica is Ready (or, in a dry run, what would be installed)."""

    dry_run: bool = False
    manifests: list[str] = field(default_factory=list)


def default_timeout(startup_budget_s: int) -> int:
    """Give helm's --timeout: the plan's start-up budget plus a minute for scheduling and image start."""
    return startup_budget_s + 60


def _helm_values(tmp: Path, req: UpRequest, api_key: str | None) -> list[str]:
    args: list[str] = []
    if api_key:
        # A values file (mode 0600, removed after) rather than --set: argv is visible to every user.
        key_file = tmp / "api-key.yaml"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"apiKey": {"value": api_key}}, f)
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
    spec: DeploymentSpec,
    cluster: Cluster,
    req: UpRequest,
    *,
    dry_run: bool = False,
    report: Progress = quiet,
) -> UpResult:
    """Install or upgrade the release and wait until every replica is Ready; Helm rolls back a failure.

    Without `dry_run`, every prerequisite (kubeconfig, helm, kubectl, the cluster answering, a GPU node,
    the RuntimeClass) is checked before anything is sent, and one error names each one missing.
    """
    check_release_name(req.release)
    plan = planning.cluster_plan(spec, simulate=req.simulate)
    options = planning.chart_options(
        spec, simulate=req.simulate, faults=req.faults, replicas=req.replicas, runtime_class=req.runtime_class
    )
    context = targets.context(plan, options)
    files = HELM.render(context)
    api_key = spec.resolve_api_key() if plan.api_key else None
    budget = context.workload.probe.start_budget_s
    with tempfile.TemporaryDirectory(prefix="deployctl-chart-") as tmp_name:
        tmp = Path(tmp_name)
        chart_dir = write_chart(files, tmp / "chart")
        values = _helm_values(tmp, req, api_key)
        if dry_run:
            objects = kube.template(req.release, chart_dir, cluster.namespace, values)
            service = next((o.name for o in objects if o.kind == "Service"), req.release)
            return UpResult(
                release=req.release,
                namespace=cluster.namespace,
                revision=0,
                plan_hash=plan.digest(),
                replicas=req.replicas,
                ready=0,
                service=service,
                cluster_ip="",
                port=plan.port,
                url=f"http://{service}.{cluster.namespace}.svc:{plan.port}",
                port_forward=port_forward(cluster.namespace, service, plan.port),
                pods=[],
                dry_run=True,
                manifests=[str(o) for o in objects],
            )
        conn = preflight(cluster, gpus=plan.num_shard, runtime_class=req.runtime_class)
        timeout = req.timeout_s or default_timeout(budget)
        release = HelmRelease(conn, req.release, chart_dir, tuple(values), timeout)
        report(f"helm upgrade --install {req.release} (waiting up to {timeout}s for {req.replicas} replica(s))")
        _install(release)
    st = HELM.status(release)
    facts = {f.name: getattr(st, f.name) for f in fields(ReleaseFacts)}
    return UpResult(**{**facts, "plan_hash": st.plan_hash or plan.digest()})


def _install(release: HelmRelease) -> None:
    with Watch(release).running() as watch:
        try:
            HELM.up(release)
            return
        except tools.ToolTimedOut as exc:
            raise EnvironmentProblem(
                f"helm upgrade did not finish in {exc.timeout:.0f}s", "is the cluster reachable?"
            ) from None
        except tools.ToolError as exc:
            failed = exc
    err = rollout_failure(release.name, failed, watch.problem)
    if isinstance(err, RolloutFailed) and err.removed:
        wait_gone(release, timeout_s=60)
    raise err


def rollout_failure(release: str, failed: tools.ToolError, problem: str | None) -> DeployctlError:
    """Give the one-line error for a failed `helm upgrade --install --atomic`, with what Helm did about it."""
    err = kube.explain(failed)
    if not isinstance(err, tools.ToolError):
        return err
    stderr = failed.stderr
    why = problem or tools.last_line(stderr)
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


# -- status and down ------------------------------------------------------------------------------


def status(cluster: Cluster, release: str) -> ReleaseStatus:
    """Give the release's Helm status, its Deployment's readiness, its pods and where its Service is."""
    check_release_name(release)
    return HELM.status(HelmRelease(Kube(cluster), release))


@dataclass(frozen=True)
class DownResult:
    release: str
    namespace: str
    removed: list[str]
    left: list[str]
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def down(cluster: Cluster, release: str, *, timeout_s: int = 120, dry_run: bool = False) -> DownResult:
    """Uninstall the release and wait until none of its pods is left."""
    check_release_name(release)
    conn = Kube(cluster)
    removed = [str(o) for o in conn.manifest(release)]
    if dry_run:
        return DownResult(release, cluster.namespace, removed, [], True)
    left = HELM.down(HelmRelease(conn, release, timeout_s=timeout_s))
    return DownResult(release, cluster.namespace, removed, left, False)
