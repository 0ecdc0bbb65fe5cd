"""`docker compose` v2 on one project directory, behind typed results (never raw CLI text)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from deployctl import tools
from deployctl.docker import engine
from deployctl.docker.errors import DockerFailed, cli_missing, from_text
from deployctl.errors import EnvironmentProblem

OVERRIDE_FILE = "compose.override.yaml"  # the operator's local changes, merged over compose.yaml


class ComposeError(tools.ToolError, DockerFailed):
    """`docker compose` failed: the command, its exit code, stdout and stderr; the message has its last lines."""


@dataclass(frozen=True)
class ServiceState(engine.RunState):
    """One container of a compose project, named by its service."""

    service: str
    container: str

    @classmethod
    def of(cls, c: engine.ContainerState) -> ServiceState:
        running = {f.name: getattr(c, f.name) for f in fields(engine.RunState)}
        return cls(**running, service=c.service or c.name, container=c.name)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def version() -> str | None:
    """Give `docker compose version --short`, or None when the CLI or the plugin is missing."""
    try:
        done = tools.run([engine.docker_binary(), "compose", "version", "--short"], timeout=30, check=False)
    except (OSError, EnvironmentProblem, tools.ToolError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


class ComposeProject:
    """The compose project that a directory's compose.yaml describes."""

    def __init__(self, directory: Path, project: str) -> None:
        self.dir = directory.absolute()
        self.project = project

    def _cmd(self, *args: str) -> list[str]:
        files = ["-f", str(self.dir / "compose.yaml")]
        override = self.dir / OVERRIDE_FILE
        if override.is_file():  # what `docker compose` reads on its own when no -f is given
            files += ["-f", str(override)]
        return [engine.docker_binary(), "compose", "--project-directory", str(self.dir), *files, *args]

    def _run(
        self, *args: str, timeout: float = 600, check: bool = True, profiles: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        # --profile is a flag of `docker compose` itself: it goes before the subcommand.
        cmd = self._cmd(*[flag for p in profiles for flag in ("--profile", p)], *args)
        return _compose(cmd, args[0], timeout=timeout, check=check)

    def validate(self) -> None:
        """Check the file with `docker compose config -q`."""
        self._run("config", "-q", timeout=60)

    def up(self) -> None:
        self._run("up", "--detach", "--remove-orphans", "--pull", "never")

    def create(self) -> None:
        """Create (or recreate) the containers without starting them."""
        self._run("up", "--no-start", "--remove-orphans", "--pull", "never")

    def down(self, profiles: tuple[str, ...] = ()) -> None:
        """Stop and remove the project's containers and network; those of `profiles` too (a plain `down`
        leaves a running profile service's container behind)."""
        self._run("down", "--remove-orphans", "--timeout", "30", profiles=profiles)

    def container_ids(self) -> list[str]:
        done = self._run("ps", "--all", "--quiet", timeout=60)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def services(self) -> list[ServiceState]:
        """Give the state of each of the project's containers (an empty list when nothing runs)."""
        out = []
        for cid in self.container_ids():
            c = engine.container(cid)
            if c is None:
                continue
            out.append(ServiceState.of(c))
        return out

    def last_log_line(self) -> str | None:
        """Give the newest log line of any of the project's containers."""
        for cid in self.container_ids():
            line = engine.last_log_line(cid)
            if line:
                return line
        return None

    def logs(self, tail: int = 50) -> str:
        """Give the last `tail` log lines of the project's containers."""
        done = self._run("logs", "--no-color", "--no-log-prefix", "--tail", str(tail), check=False, timeout=60)
        return (done.stdout + done.stderr).strip()

    def follow_logs(self, tail: int = 50) -> Iterator[str]:
        """Yield log lines as they come (until the project stops or the caller stops reading)."""
        try:
            proc = tools.start(self._cmd("logs", "--no-color", "--follow", "--tail", str(tail)))
        except tools.ToolMissing:
            raise cli_missing() from None
        try:
            assert proc.stdout is not None
            yield from (line.rstrip("\n") for line in proc.stdout)
        finally:
            tools.stop(proc)

    def networks(self) -> list[str]:
        return engine.project_networks(self.project)


def down_project(project: str) -> None:
    """Stop and remove a compose project by its name alone (its files may be gone or renamed)."""
    cmd = [engine.docker_binary(), "compose", "--project-name", project, "down", "--remove-orphans", "--timeout", "30"]
    _compose(cmd, "down", timeout=600, cwd=Path("/"))


def _compose(
    cmd: Sequence[str], verb: str, *, timeout: float, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a `docker compose <verb>` command; Docker's own words about the host become its host problem."""
    try:
        return tools.run(cmd, timeout=timeout, check=check, cwd=cwd)
    except tools.ToolMissing:
        raise cli_missing() from None
    except tools.ToolTimedOut as exc:
        raise ComposeError(
            cmd, None, exc.stdout, exc.stderr, message=f"docker compose {verb} took longer than {timeout:.0f}s"
        ) from None
    except tools.ToolError as exc:
        text = (exc.stderr or exc.stdout).strip()
        problem = from_text(text)
        if problem is not None:
            raise problem from None
        lines = [line for line in text.splitlines() if line.strip()]
        raise ComposeError(
            cmd,
            exc.returncode,
            exc.stdout,
            exc.stderr,
            message=f"docker compose {verb} failed: {' | '.join(lines[-3:]) or 'no output'}",
        ) from None
