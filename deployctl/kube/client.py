"""The cluster connection: which kubeconfig, context and namespace, and helm and kubectl run with them.

Every command goes through `deployctl.tools.run`; a failure is explained once (errors.explain) and every
answer is parsed from `-o json` into the typed objects of resources.py.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import ValidationError

from deployctl import tools
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.kube.errors import Forbidden, NotFound, explain
from deployctl.kube.resources import (
    Deployment,
    Endpoints,
    Event,
    ManifestObject,
    Node,
    ObjectList,
    Pod,
    Release,
    Service,
    _Json,
)

# Kubernetes names: a release name becomes part of Service and Deployment names (DNS-1123 label),
# and Helm caps release names at 53 characters (helm/pkg/chartutil/validate_name.go).
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RELEASE_NAME_MAX = 53
TOOLS_HINT = "see docs/kubernetes.md; deployctl drives the cluster through helm and kubectl"
TIMEOUT_S = 60  # one kubectl or helm call that is not an install or uninstall
# `helm upgrade --install --atomic` rolls back on SIGTERM: give it time to finish that before SIGKILL.
INSTALL_STOP_GRACE_S = 30.0

M = TypeVar("M", bound=_Json)


@dataclass(frozen=True)
class Cluster:
    """Where to talk to: kubeconfig (None: $KUBECONFIG or ~/.kube/config), context and namespace."""

    namespace: str = "default"
    context: str | None = None
    kubeconfig: str | None = None

    def __post_init__(self) -> None:
        if not RELEASE_NAME.match(self.namespace) or len(self.namespace) > 63:
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


def kubeconfig_problem(cluster: Cluster) -> DeployctlError | None:
    """Give why no kubeconfig can be used (helm would otherwise try http://localhost:8080), or None."""
    if cluster.kubeconfig:
        if not Path(cluster.kubeconfig).is_file():
            return InputError(f"--kubeconfig {cluster.kubeconfig}: no such file")
        return None
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None  # inside a pod: the service account's in-cluster config
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    paths = paths or [str(Path.home() / ".kube" / "config")]
    if not any(Path(p).is_file() for p in paths):
        return EnvironmentProblem(
            f"no kubeconfig: deployctl does not know which cluster to use (looked for {', '.join(paths)})",
            "set KUBECONFIG or pass --kubeconfig FILE",
        )
    return None


def tool_problems(names: Sequence[str] = ("helm", "kubectl")) -> list[DeployctlError]:
    """Give one problem for each of these tools that is not on PATH."""
    return [tools.ToolMissing(name, TOOLS_HINT) for name in names if not shutil.which(name)]


def one_error(problems: Sequence[DeployctlError]) -> DeployctlError:
    """Give one error naming every problem (the first one as it is when it is alone).

    Its exit code is bad input (2) when any problem is the user's input, else a host problem (3).
    """
    if len(problems) == 1:
        return problems[0]
    cls = InputError if any(isinstance(p, InputError) for p in problems) else EnvironmentProblem
    hints = list(dict.fromkeys(p.hint for p in problems if p.hint))
    return cls(f"{len(problems)} problems: " + "; ".join(p.message for p in problems), "; ".join(hints) or None)


def require(problems: Sequence[DeployctlError]) -> None:
    """Raise one error naming every problem, if there is any."""
    if problems:
        raise one_error(problems)


class Kube:
    """The one transport to the cluster: helm and kubectl, run with the same kubeconfig, context, namespace."""

    def __init__(self, cluster: Cluster) -> None:
        """Connect to `cluster`; one error names everything missing (kubeconfig, helm, kubectl)."""
        self.cluster = cluster
        require([p for p in [kubeconfig_problem(cluster), *tool_problems()] if p is not None])

    def run(self, tool: str, *args: str, timeout: float = TIMEOUT_S, stdin: str | None = None) -> str:
        """Give the tool's stdout; its failure explained (errors.explain), its silence as a host problem."""
        cmd = [tool, *args, *self.cluster.flags(tool)]
        try:
            return tools.run(cmd, timeout=timeout, stdin=stdin).stdout
        except tools.ToolTimedOut:
            raise EnvironmentProblem(
                f"{tool} {args[0]} did not answer in {timeout:.0f}s", "is the cluster reachable?"
            ) from None
        except tools.ToolError as exc:
            raise explain(exc) from None

    def _get(self, model: type[M], *args: str) -> list[M]:
        raw = self.run("kubectl", "get", *args, "-o", "json")
        return parse(ObjectList[model], raw, f"kubectl get {args[0]}").items  # type: ignore[valid-type]

    def check_reachable(self) -> None:
        """Raise when the API server does not answer (any user may read /version)."""
        self.run("kubectl", "get", "--raw", "/version", "--request-timeout", "15s", timeout=30)

    def pods(self, selector: str) -> list[Pod]:
        return self._get(Pod, "pods", "-l", selector)

    def deployments(self, selector: str) -> list[Deployment]:
        return self._get(Deployment, "deployments", "-l", selector)

    def services(self, selector: str) -> list[Service]:
        return self._get(Service, "services", "-l", selector)

    def endpoints(self, name: str) -> Endpoints:
        return parse(Endpoints, self.run("kubectl", "get", "endpoints", name, "-o", "json"), "kubectl get endpoints")

    def events(self, field_selector: str) -> list[Event]:
        return self._get(Event, "events", "--field-selector", field_selector)

    def nodes(self) -> list[Node] | None:
        """Give the cluster's nodes, or None when this user may not list them (a namespace-scoped role)."""
        try:
            return self._get(Node, "nodes")
        except Forbidden:
            return None

    def has_runtime_class(self, name: str) -> bool | None:
        """Give whether the RuntimeClass exists (None when this user may not read RuntimeClasses)."""
        try:
            self.run("kubectl", "get", "runtimeclass", name, "-o", "name")
        except Forbidden:
            return None
        except NotFound:
            return False
        return True

    def release(self, name: str) -> Release:
        """Give `helm status` of the release (NotFound when it is not installed here)."""
        return parse(Release, self.run("helm", "status", name, "-o", "json"), "helm status")

    def manifest(self, release: str) -> list[ManifestObject]:
        """Give the objects the installed release is made of."""
        return manifest_objects(self.run("helm", "get", "manifest", release))

    def install(self, release: str, chart_dir: Path, values: Sequence[str], *, timeout_s: int) -> None:
        """`helm upgrade --install --wait --atomic`: every replica Ready within `timeout_s`, or Helm rolls back.

        A failure is the ToolError itself (the caller says what Helm did about it); a Ctrl-C stops helm
        with SIGTERM, so that it can roll back first.
        """
        cmd = ["helm", "upgrade", "--install", release, str(chart_dir), "--create-namespace", "--wait", "--atomic"]
        cmd += ["--timeout", f"{timeout_s}s", *values, *self.cluster.flags("helm")]
        tools.run(cmd, timeout=timeout_s + 120, grace_s=INSTALL_STOP_GRACE_S)

    def uninstall(self, release: str, *, timeout_s: int) -> None:
        self.run("helm", "uninstall", release, "--wait", "--timeout", f"{timeout_s}s", timeout=timeout_s + 30)


def parse(model: type[M], raw: str, what: str) -> M:
    """Give `what`'s JSON as `model`; a shape deployctl cannot read is one line naming the field, not a traceback."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise DeployctlError(
            f"{what} printed JSON deployctl cannot read: {where}: {first['msg']}",
            "check that helm and kubectl are the versions docs/kubernetes.md names",
        ) from None


def template(release: str, chart_dir: Path, namespace: str, values: Sequence[str]) -> list[ManifestObject]:
    """Give the objects `helm template` renders locally: nothing is sent to a cluster, only helm is needed."""
    require(tool_problems(["helm"]))
    cmd = ["helm", "template", release, str(chart_dir), "--namespace", namespace, *values]
    try:
        out = tools.run(cmd, timeout=TIMEOUT_S).stdout
    except tools.ToolError as exc:
        raise explain(exc) from None
    return manifest_objects(out)


def manifest_objects(text: str) -> list[ManifestObject]:
    """Give the kind and name of each object in a multi-document YAML manifest."""
    return [ManifestObject(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(text) if d]


def check_release_name(name: str) -> str:
    """Give `name` if Helm and Kubernetes accept it as a release name; an InputError otherwise."""
    if len(name) > RELEASE_NAME_MAX or not RELEASE_NAME.match(name):
        raise InputError(
            f"release name {name!r} is not a Kubernetes name",
            f"use lower-case letters, digits and '-', at most {RELEASE_NAME_MAX} characters (--release NAME)",
        )
    return name
