"""The one table from Docker's failures (SDK exceptions, `docker` CLI output) to errors an operator can act on."""

from __future__ import annotations

import os

from deployctl.errors import DeployctlError, EnvironmentProblem, InputError

START_HINT = "start it (systemctl start docker), or point DOCKER_HOST at a running engine"


class DockerFailed(DeployctlError):
    """Docker answered, but refused or failed what was asked; the message names the operation."""


class ImageMissing(InputError):
    """The named image is not on this host."""

    def __init__(self, name: str, hint: str | None = None) -> None:
        super().__init__(
            f"image {name} is not on this host",
            hint or "load it from the offline bundle (deployctl bundle install) or build it first",
        )
        self.name = name


def socket_address() -> str:
    """Give where the Docker engine is expected (DOCKER_HOST, else the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def unreachable() -> EnvironmentProblem:
    return EnvironmentProblem(f"Docker is not reachable at {socket_address()}", START_HINT)


def no_permission() -> EnvironmentProblem:
    return EnvironmentProblem(
        f"no permission to use Docker at {socket_address()}", "add your user to the docker group, or run with sudo"
    )


def cli_missing() -> EnvironmentProblem:
    return EnvironmentProblem("the docker CLI is not installed", "install Docker Engine and the Compose v2 plugin")


def compose_missing() -> EnvironmentProblem:
    return EnvironmentProblem(
        "Docker Compose v2 is missing", "install the docker-compose-plugin (docker compose version)"
    )


def from_text(text: str) -> EnvironmentProblem | None:
    """Give the host problem that Docker's own words describe, or None when they describe another failure."""
    lowered = text.lower()
    if "permission denied" in lowered and ("docker.sock" in lowered or "docker daemon" in lowered):
        return no_permission()
    if (
        "cannot connect to the docker daemon" in lowered
        or "connection refused" in lowered
        or "connection aborted" in lowered
        or ("no such file or directory" in lowered and "docker.sock" in lowered)
        or "error while fetching server api version" in lowered
    ):
        return unreachable()
    if "is not a docker command" in lowered or ("unknown command" in lowered and "compose" in lowered):
        return compose_missing()
    return None


def from_sdk(exc: Exception, what: str) -> DeployctlError:
    """Give the project error for an exception the Docker SDK raised while doing `what`."""
    import requests
    from docker import errors

    if isinstance(exc, errors.APIError):
        explanation = str(exc.explanation or exc).strip()
        if exc.status_code == 403 or "permission denied" in explanation.lower():
            return from_text(explanation) or DockerFailed(f"{what}: {explanation}")
        return DockerFailed(f"{what} failed: {explanation.splitlines()[0] if explanation else exc}")
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return from_text(str(exc)) or unreachable()
    return from_text(str(exc)) or unreachable()
