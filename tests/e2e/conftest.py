"""End-to-end fixtures: a real Docker engine (required in CI), images built locally, unique projects."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployctl.images.build import DEBIAN_BASE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def _engine_up() -> str | None:
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"docker CLI unusable: {exc}"
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "docker info failed"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if compose.returncode != 0:
        return "Docker Compose v2 is missing"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> None:
    problem = _engine_up()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a real Docker engine for the end-to-end tests: {problem}", pytrace=False)
        pytest.skip(f"no Docker engine: {problem}")


@pytest.fixture(scope="session")
def sim_image(docker_engine: None) -> str:
    """The simulator image, built from a base made of Debian packages (no registry)."""
    from deployctl.docker import image_exists
    from deployctl.images.build import build_debian_base, build_sim

    if not image_exists(DEBIAN_BASE):
        build_debian_base()
    return build_sim(DEBIAN_BASE).tag


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployctl(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a process of its own, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "deployctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


class Project:
    """One stack under test: a spec file, a unique project name and port, cleaned up afterwards."""

    def __init__(self, root: Path) -> None:
        self.name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.root = root
        self.stack = root / "stack"
        self.spec = root / "deployctl.yaml"
        self.write()

    def write(self, extra: str = "") -> None:
        self.spec.write_text(f"name: {self.name}\nserve:\n  port: {self.port}\n{extra}stack_dir: stack\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return deployctl(*args, cwd=self.root, **kw)  # type: ignore[arg-type]

    def containers(self) -> list[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}"],
            capture_output=True,
            text=True,
        )
        return out.stdout.split()

    def networks(self) -> list[str]:
        out = subprocess.run(
            ["docker", "network", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.name}"],
            capture_output=True,
            text=True,
        )
        return out.stdout.split()


@pytest.fixture
def project(tmp_path: Path, sim_image: str) -> Iterator[Project]:
    p = Project(tmp_path)
    yield p
    if (p.stack / "compose.yaml").exists():
        subprocess.run(
            ["docker", "compose", "--project-directory", str(p.stack), "down", "--remove-orphans", "-t", "1"],
            capture_output=True,
        )
