"""Ownership decisions on containers as Docker describes them (the e2e tests run the real engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployctl import docker, models, spec
from deployctl import gpus as profiles
from deployctl.docker import ContainerState
from deployctl.errors import InputError
from deployctl.ops import owner, upgrade
from deployctl.planner import plan


def _container(project: str, labels: dict[str, str]) -> ContainerState:
    return ContainerState(
        name=f"{project}-engine-1",
        service="engine",
        state="running",
        health="healthy",
        exit_code=None,
        restarts=0,
        started_at=None,
        uptime_s=None,
        image="img",
        labels={owner.PROJECT_LABEL: project, **labels},
    )


class Engine:
    """Containers as `docker ps --filter label=...` lists them, and the projects `down` removed."""

    def __init__(self) -> None:
        self.running: list[ContainerState] = []
        self.removed: list[str] = []

    def append(self, c: ContainerState) -> None:
        self.running.append(c)

    def labelled(self, label: str) -> list[ContainerState]:
        key, _, value = label.partition("=")
        return [c for c in self.running if c.labels.get(key) == value]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    fake = Engine()
    monkeypatch.setattr(docker, "labelled_containers", fake.labelled)
    monkeypatch.setattr(docker, "down_project", fake.removed.append)
    return fake


def test_a_project_run_from_another_dir_is_refused_naming_it(engine: Engine, tmp_path: Path) -> None:
    engine.append(_container("llm", owner.labels(tmp_path / "prod", None)))
    with pytest.raises(InputError, match=r"'llm' is already used by the stack in .*/prod") as err:
        owner.check_free("llm", tmp_path / "rehearsal")
    assert f"deployctl down --stack-dir {tmp_path / 'prod'}" in str(err.value.hint)
    owner.check_free("llm", tmp_path / "prod")  # its own directory may upgrade it
    with pytest.raises(owner.NotOwned, match="runs from"):
        owner.check_own("llm", tmp_path / "rehearsal")


def test_compose_working_dir_stands_in_for_older_containers(engine: Engine, tmp_path: Path) -> None:
    engine.append(_container("llm", {owner.COMPOSE_DIR_LABEL: str(tmp_path / "old")}))
    with pytest.raises(InputError, match=r"stack in .*/old"):
        owner.check_free("llm", tmp_path / "new")


def test_a_renamed_stack_is_refused_or_replaced(engine: Engine, tmp_path: Path) -> None:
    engine.append(_container("before", owner.labels(tmp_path / "s", None)))
    with pytest.raises(InputError, match="renamed to 'after', but before still runs") as err:
        owner.check_renamed("after", tmp_path / "s", replace=False)
    assert "down --project before" in str(err.value.hint) and "--replace" in str(err.value.hint)
    assert owner.check_renamed("after", tmp_path / "s", replace=True) == ["before"]
    assert engine.removed == ["before"]


def test_down_project_refuses_a_project_of_another_dir(engine: Engine, tmp_path: Path) -> None:
    engine.append(_container("other", owner.labels(tmp_path / "elsewhere", None)))
    with pytest.raises(InputError, match=r"runs from .*/elsewhere"):
        owner.down_old_project("other", tmp_path / "s")
    assert engine.removed == []


@pytest.mark.parametrize(
    ("serve", "allowed"),
    [
        ("bind: 127.0.0.1", True),
        ("bind: 0.0.0.0", False),
        ("bind: 0.0.0.0\n  allow_open: true", True),
        ("bind: '::'", False),
        ("bind: 0.0.0.0\n  api_key_env: K", True),
    ],
)
def test_an_open_bind_needs_a_key_or_allow_open(serve: str, allowed: bool) -> None:
    s = spec.parse(f"serve:\n  {serve}\n")
    p = plan(s, models.preset(spec.DEFAULT_PRESET), profiles.host("rtx4090", 1))
    if allowed:
        upgrade.check_exposure(s, p, allow_open=False)
    else:
        with pytest.raises(InputError, match="without an API key"):
            upgrade.check_exposure(s, p, allow_open=False)
        upgrade.check_exposure(s, p, allow_open=True)


def test_up_refuses_an_open_bind_in_one_line_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from deployctl.cli import cli

    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["up", "--simulate", "--bind", "0.0.0.0", "--stack-dir", "stack"])
    assert done.exit_code == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: serve.bind 0.0.0.0 would serve the model to the network without an API key")
    assert "--allow-open" in line and list(tmp_path.iterdir()) == []
