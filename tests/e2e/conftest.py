"""End-to-end fixtures: a real Docker engine (required in CI), images built locally, unique projects."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ci_setup, tiers

from deployctl.images.build import DEBIAN_BASE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # The last Docker test of this worker's run is over: the real-engine tier may start (helpers/tiers.py).
    if tiers.is_docker_test(item) and (nextitem is None or not tiers.is_docker_test(nextitem)):
        tiers.docker_tests_done()


def pytest_sessionfinish() -> None:
    tiers.docker_tests_done()


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
    ci_setup.wait_for("docker")
    problem = _engine_up()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a real Docker engine for the end-to-end tests: {problem}", pytrace=False)
        pytest.skip(f"no Docker engine: {problem}")


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


def _base_image() -> str:
    """The suite's cached Debian base (kept between runs): made from the user's if they have one, else mmdebstrap."""
    from deployctl.images.build import build_debian_base

    if _docker("image", "inspect", DEBIAN_BASE).returncode == 0:
        return DEBIAN_BASE
    users = "deployctl/debian-base:bookworm"
    if _docker("image", "inspect", users).returncode == 0:
        _docker("tag", users, DEBIAN_BASE)  # a name of ours on the same image: nothing is copied
        return DEBIAN_BASE
    return build_debian_base(DEBIAN_BASE).tag


@pytest.fixture(scope="session")
def sim_image(docker_engine: None) -> Iterator[str]:
    """The simulator image under this run's own tag, built from the cached base (no registry), removed at the end."""
    from deployctl.engines.simulator import SIM_IMAGE
    from deployctl.images.build import build_sim

    assert SIM_IMAGE.startswith("deployctl-test/"), SIM_IMAGE  # tests/conftest.py names it
    base = _base_image()
    before = image_ids()
    tag = build_sim(base, SIM_IMAGE).tag
    yield tag
    remove_images([tag], before)


def image_ids() -> set[str]:
    """Give the IDs of every image on the engine, intermediate ones included."""
    return set(_docker("images", "-aq", "--no-trunc").stdout.split())


def remove_images(tags: list[str], before: set[str]) -> None:
    """Untag `tags` and remove the untagged images made since `before`, and nothing else.

    Never `docker rmi` with pruning: a build that hit the cache shares intermediate images made
    before the run (by the user's own builds), and pruning from our image would take those too.
    """
    if tags:
        _docker("rmi", "--no-prune", *tags)
    for _ in range(20):  # children before parents: a parent refuses while a child is there
        listed = _docker("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout.splitlines()
        ours = [line.split()[0] for line in listed if line.split()[0] not in before and line.endswith("<none>")]
        if not ours:
            return
        for image_id in ours:
            _docker("rmi", "--no-prune", image_id)


# What `docker ... ls` lists, by ID and name: before and after the e2e run they must be equal,
# apart from the suite's cached base. The comparison covers the whole engine, so the e2e suite
# must run alone on it: under `flock /tmp/deployctl-docker.lock` (as .ci/run and every helper do).
SNAPSHOT = {
    "images": ["images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
    "containers": ["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
    "volumes": ["volume", "ls", "--format", "{{.Name}}"],
    "networks": ["network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"],
}
KEPT = (DEBIAN_BASE,)


def docker_state() -> dict[str, set[str]]:
    """Give the engine's images, containers, volumes and networks (IDs and names)."""
    out = {}
    for kind, args in SNAPSHOT.items():
        done = _docker(*args)
        assert done.returncode == 0, done.stderr
        out[kind] = {line for line in done.stdout.splitlines() if line.strip() and not line.endswith(KEPT)}
    return out


def _settled(before: dict[str, set[str]], bound_s: float = 120) -> dict[str, set[str]]:
    """Give the engine's state once its builds have finished: a build step runs in a container of its
    own, and the engine finishes an interrupted build (committing the step's image) after its client
    has gone. So: no container that was not there before, and the same state twice, 2 s apart; after
    `bound_s` the state as it is (the comparison then names what is left)."""
    deadline = time.monotonic() + bound_s
    state = docker_state()
    while time.monotonic() < deadline:
        if not state["containers"] - before["containers"]:
            time.sleep(2)
            again = docker_state()
            if again == state:
                return state
            state = again
        else:
            time.sleep(1)
            state = docker_state()
    return state


@pytest.fixture(scope="session", autouse=True)
def _host_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """The e2e run leaves Docker as it found it (a failure here names what was left or removed)."""
    ci_setup.wait_for("docker")
    if _engine_up() is not None:
        yield  # no engine: docker_engine fails (CI) or skips each test
        return
    before = docker_state()
    yield
    after = _settled(before)
    diff = {
        kind: {"left": sorted(after[kind] - before[kind]), "removed": sorted(before[kind] - after[kind])}
        for kind in SNAPSHOT
    }
    changed = {k: v for k, v in diff.items() if v["left"] or v["removed"]}
    assert not changed, f"the e2e suite changed the Docker engine's objects: {changed}"


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
