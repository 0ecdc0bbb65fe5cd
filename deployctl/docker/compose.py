"""`docker compose` v2 on one project directory, behind typed results (never raw CLI text)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from deployctl.docker import engine
from deployctl.docker.errors import DockerFailed, cli_missing, from_text
from deployctl.errors import EnvironmentProblem

OVERRIDE_FILE = "compose.override.yaml"  # the operator's local changes, merged over compose.yaml


class ComposeError(DockerFailed):
    """`docker compose` failed; the message carries the command and its last lines."""

    def __init__(self, message: str, command: list[str] | None = None, returncode: int | None = None) -> None:
        super().__init__(message)
        self.command = command or []
        self.returncode = returncode


@dataclass(frozen=True)
class ServiceState:
    service: str
    container: str
    state: str  # running, restarting, exited, created, ...
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    exit_code: int | None
    restarts: int
    started_at: str | None
    uptime_s: float | None
    image: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def version() -> str | None:
    """Give `docker compose version --short`, or None when the CLI or the plugin is missing."""
    try:
        done = subprocess.run(
            [engine.docker_binary(), "compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired, EnvironmentProblem):
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
        self, *args: str, timeout: float | None = 600, check: bool = True, profiles: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        # --profile is a flag of `docker compose` itself: it goes before the subcommand.
        cmd = self._cmd(*[flag for p in profiles for flag in ("--profile", p)], *args)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise cli_missing() from None
        except subprocess.TimeoutExpired:
            raise ComposeError(f"docker compose {args[0]} took longer than {timeout:.0f}s", cmd) from None
        if check and done.returncode != 0:
            text = (done.stderr or done.stdout).strip()
            problem = from_text(text)
            if problem is not None:
                raise problem
            lines = [line for line in text.splitlines() if line.strip()]
            raise ComposeError(
                f"docker compose {args[0]} failed: {' | '.join(lines[-3:]) or 'no output'}", cmd, done.returncode
            )
        return done

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
            out.append(
                ServiceState(
                    service=c.service or c.name,
                    container=c.name,
                    state=c.state,
                    health=c.health,
                    exit_code=c.exit_code,
                    restarts=c.restarts,
                    started_at=c.started_at,
                    uptime_s=c.uptime_s,
                    image=c.image,
                )
            )
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
        proc = subprocess.Popen(
            self._cmd("logs", "--no-color", "--follow", "--tail", str(tail)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert proc.stdout is not None
            yield from (line.rstrip("\n") for line in proc.stdout)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def networks(self) -> list[str]:
        return engine.project_networks(self.project)


def down_project(project: str) -> None:
    """Stop and remove a compose project by its name alone (its files may be gone or renamed)."""
    cmd = [engine.docker_binary(), "compose", "--project-name", project, "down", "--remove-orphans", "--timeout", "30"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd="/")
    except FileNotFoundError:
        raise cli_missing() from None
    except subprocess.TimeoutExpired:
        raise ComposeError("docker compose down took longer than 600s", cmd) from None
    if done.returncode != 0:
        text = (done.stderr or done.stdout).strip()
        raise from_text(text) or ComposeError(f"docker compose down failed: {text.splitlines()[-1:]}", cmd)
