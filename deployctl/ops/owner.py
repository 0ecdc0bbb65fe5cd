"""Who owns a compose project: the stack directory (and spec) its containers were started from.

Every container deployctl starts carries the stack dir and spec as labels; Compose adds its own
working-directory label, which stands in for containers started before deployctl labelled them.
`up` refuses a project another directory runs, `status`/`down` touch only their own, and a stack
whose `name:` changed finds the project it ran under before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployctl import docker
from deployctl.errors import DeployctlError, InputError
from deployctl.spec import DEFAULT_SPEC_FILE

STACK_LABEL = "ai.deployctl.stack-dir"
SPEC_LABEL = "ai.deployctl.spec"
PROJECT_LABEL = "com.docker.compose.project"  # set by Compose on every container of a project
COMPOSE_DIR_LABEL = "com.docker.compose.project.working_dir"  # set by Compose: its --project-directory


class NotOwned(DeployctlError):
    """The project runs, but from another stack directory: this one has nothing running."""

    exit_code = 5


def spec_file(path: Path | None) -> Path | None:
    """Give the spec file a command reads (the one named, else ./deployctl.yaml when present), absolute."""
    if path is None:
        candidate = Path(DEFAULT_SPEC_FILE)
        path = candidate if candidate.is_file() else None
    return path.absolute() if path is not None else None


def labels(stack_dir: Path, spec: Path | None) -> dict[str, str]:
    """Give the ownership labels for the containers of the stack in `stack_dir`."""
    return {STACK_LABEL: str(stack_dir.absolute()), SPEC_LABEL: str(spec.absolute()) if spec else ""}


def _dir_of(c: docker.ContainerState) -> str:
    return c.labels.get(STACK_LABEL) or c.labels.get(COMPOSE_DIR_LABEL, "")


@dataclass(frozen=True)
class Owner:
    project: str
    stack_dir: str
    spec: str
    containers: tuple[str, ...]


def owner_of(project: str) -> Owner | None:
    """Give the stack dir that runs `project` (its containers' labels), or None when it has no container."""
    found = docker.labelled_containers(f"{PROJECT_LABEL}={project}")
    if not found:
        return None
    first = found[0]
    return Owner(project, _dir_of(first), first.labels.get(SPEC_LABEL, ""), tuple(c.name for c in found))


def projects_of(stack_dir: Path) -> list[str]:
    """Give the compose projects whose containers were started from `stack_dir`, by name."""
    found = docker.labelled_containers(f"{STACK_LABEL}={stack_dir.absolute()}")
    return sorted({c.labels.get(PROJECT_LABEL, "") for c in found} - {""})


def _same(a: str, b: Path) -> bool:
    return Path(a).absolute() == b.absolute() if a else False


def check_free(project: str, stack_dir: Path) -> None:
    """Raise InputError (one line, naming the other directory) when another stack dir runs `project`."""
    found = owner_of(project)
    if found is None or _same(found.stack_dir, stack_dir):
        return
    where = found.stack_dir or "a directory deployctl does not know (started by hand?)"
    fix = (
        f"`deployctl down --stack-dir {found.stack_dir}` stops that one"
        if found.stack_dir
        else f"`docker compose -p {project} down` stops that one"
    )
    raise InputError(
        f"the project name {project!r} is already used by the stack in {where}",
        f"{fix}, or give this stack another `name:` in its spec",
    )


def check_own(project: str, stack_dir: Path) -> None:
    """Raise NotOwned when `project` runs from another stack dir (so status/down leave it alone)."""
    found = owner_of(project)
    if found is not None and found.stack_dir and not _same(found.stack_dir, stack_dir):
        raise NotOwned(
            f"the project {project!r} runs from {found.stack_dir}, not from {stack_dir.absolute()}",
            f"use `--stack-dir {found.stack_dir}` to act on it",
        )


def renamed_from(project: str, stack_dir: Path) -> list[str]:
    """Give the other projects still running from `stack_dir` (left behind when `name:` changed)."""
    return [p for p in projects_of(stack_dir) if p != project]


def check_renamed(project: str, stack_dir: Path, replace: bool) -> list[str]:
    """Refuse (or with `replace`, remove) projects this stack dir ran under another name; give those removed."""
    old = renamed_from(project, stack_dir)
    if not old:
        return []
    if not replace:
        names = ", ".join(old)
        raise InputError(
            f"this stack was renamed to {project!r}, but {names} still runs from {stack_dir.absolute()}",
            f"`deployctl down --project {old[0]} --stack-dir {stack_dir}` removes it, or `deployctl up --replace` does it for you",
        )
    for name in old:
        docker.down_project(name)
    return old


def down_old_project(project: str, stack_dir: Path) -> None:
    """Remove `project` when it ran from `stack_dir` (a name the stack had before); refuse anything else."""
    found = owner_of(project)
    if found is None:
        raise NotOwned(f"no container of project {project!r} exists", "`deployctl status` shows what runs")
    if not _same(found.stack_dir, stack_dir):
        raise InputError(
            f"the project {project!r} runs from {found.stack_dir or 'elsewhere'}, not from {stack_dir.absolute()}",
            f"use `--stack-dir {found.stack_dir}`" if found.stack_dir else "it is not deployctl's to remove",
        )
    docker.down_project(project)
