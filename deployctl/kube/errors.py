"""The one table from helm's and kubectl's words (a ToolError: command, exit code, stdout, stderr) to errors a user acts on."""

from __future__ import annotations

from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.tools import ToolError, last_line


class NotFound(DeployctlError):
    """The release is not installed in that namespace."""

    exit_code = 5


class Forbidden(EnvironmentProblem):
    """The kubeconfig's user may not do this (RBAC)."""


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
