"""The cluster connection: which kubeconfig, context and namespace, and helm and kubectl run with them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployctl.errors import EnvironmentProblem, InputError
from deployctl.kube.errors import ToolError, explain

# Kubernetes names: a release name becomes part of Service and Deployment names (DNS-1123 label),
# and Helm caps release names at 53 characters (helm/pkg/chartutil/validate_name.go).
RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RELEASE_NAME_MAX = 53


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


def check_release_name(name: str) -> str:
    """Give `name` if Helm and Kubernetes accept it as a release name; an InputError otherwise."""
    if len(name) > RELEASE_NAME_MAX or not RELEASE_NAME.match(name):
        raise InputError(
            f"release name {name!r} is not a Kubernetes name",
            f"use lower-case letters, digits and '-', at most {RELEASE_NAME_MAX} characters (--release NAME)",
        )
    return name
