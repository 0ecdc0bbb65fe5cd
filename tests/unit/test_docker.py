"""The Docker facade's error table: what an operator reads when Docker is away or says no."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.tinymodel import write_spec, write_tiny_model

from deployctl import docker
from deployctl.cli import cli
from deployctl.docker import engine
from deployctl.docker.errors import from_text
from deployctl.errors import EnvironmentProblem


@pytest.fixture
def no_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_HOST points at a socket nothing listens on."""
    socket = f"unix://{tmp_path}/nobody-home.sock"
    monkeypatch.setenv("DOCKER_HOST", socket)
    engine._client.cache_clear()
    yield socket
    engine._client.cache_clear()


def test_an_unreachable_daemon_names_the_socket(no_daemon: str) -> None:
    with pytest.raises(EnvironmentProblem, match=f"Docker is not reachable at {no_daemon}") as caught:
        docker.image("deployctl/any:1")
    assert caught.value.exit_code == 3
    with pytest.raises(EnvironmentProblem, match="not reachable"):
        docker.image_exists("deployctl/any:1")


def test_bundle_create_without_docker_is_a_host_problem_not_a_missing_image(no_daemon: str, tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny-llama")
    spec_file = write_spec(tmp_path, model)
    out = tmp_path / "out.bundle"
    result = CliRunner().invoke(
        cli, ["bundle", "create", "-f", str(spec_file), "-o", str(out), "--simulate", "--wheels", "none"]
    )
    assert result.exit_code == 3, result.output
    assert f"Docker is not reachable at {no_daemon}" in result.stderr
    assert "not on this host" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            "not reachable",
        ),
        (
            "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            "no permission",
        ),
        ("docker: 'compose' is not a docker command.", "Compose v2 is missing"),
    ],
)
def test_docker_cli_words_map_to_host_problems(text: str, want: str) -> None:
    problem = from_text(text)
    assert problem is not None and want in problem.message and problem.exit_code == 3


def test_other_compose_failures_are_not_host_problems() -> None:
    assert from_text("service engine: invalid port mapping") is None


def test_doctor_json_says_docker_is_unreachable(no_daemon: str) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["docker engine"]["status"] == "FAIL"
    assert no_daemon in checks["docker engine"]["detail"]
