"""helm and kubectl failures: one error that carries the command, and the table from their words to errors a user acts on."""

from __future__ import annotations

from deployctl.errors import DeployctlError, EnvironmentProblem, InputError


class NotFound(DeployctlError):
    """The release is not installed in that namespace."""

    exit_code = 5


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
