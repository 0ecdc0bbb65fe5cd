"""The connection to the Docker engine (SDK) and the `docker` CLI, with errors an operator can act on."""

from __future__ import annotations

import os
import shutil
from functools import cache
from typing import Any

from deployctl.errors import EnvironmentProblem


def docker_binary() -> str:
    """Give the docker CLI to run (`DEPLOYCTL_DOCKER` overrides)."""
    found = os.environ.get("DEPLOYCTL_DOCKER") or shutil.which("docker")
    if not found:
        raise EnvironmentProblem("the docker CLI is not installed", "install Docker Engine and the Compose v2 plugin")
    return found


@cache
def client() -> Any:
    """Give a Docker SDK client, or an EnvironmentProblem when the engine cannot be reached."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise EnvironmentProblem("the docker Python SDK is not installed", "pip install docker") from None

    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except DockerException as exc:
        text = str(exc)
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if "Permission denied" in text:
            raise EnvironmentProblem(
                f"no permission to use the Docker engine at {where}",
                "add your user to the docker group, or run with sudo",
            ) from None
        raise EnvironmentProblem(
            f"the Docker engine is not reachable at {where}", "start it (systemctl start docker)"
        ) from None
    return c


def image_exists(name: str) -> bool:
    """Give whether the engine holds an image of this name."""
    from docker.errors import ImageNotFound

    try:
        client().images.get(name)
        return True
    except ImageNotFound:
        return False
