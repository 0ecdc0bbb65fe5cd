"""Drive `docker compose` v2 on a stack directory; give typed results, never raw CLI text."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from deployctl.compose.render import StackInfo
from deployctl.docker_engine import client, docker_binary
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.safepath import check_dir


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


class ComposeError(DeployctlError):
    """`docker compose` failed; the message carries its last lines."""


class Stack:
    """A rendered stack directory and the compose project it describes."""

    def __init__(self, directory: Path) -> None:
        self.dir = check_dir(directory, "stack_dir").absolute()
        if not (self.dir / "compose.yaml").is_file():
            raise InputError(f"{self.dir} holds no compose.yaml", "run `deployctl render` or `deployctl up` first")
        self.info = StackInfo.read(self.dir)

    # -- running docker compose ------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        return [
            docker_binary(),
            "compose",
            "--project-directory",
            str(self.dir),
            "-f",
            str(self.dir / "compose.yaml"),
            *args,
        ]

    def run(self, *args: str, timeout: float | None = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `docker compose ARGS` and give its result; a failure raises ComposeError with its output."""
        try:
            done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise EnvironmentProblem("the docker CLI is not installed") from None
        except subprocess.TimeoutExpired:
            raise ComposeError(f"docker compose {args[0]} took longer than {timeout:.0f}s") from None
        if check and done.returncode != 0:
            lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
            if any("is not a docker command" in line or "unknown command" in line for line in lines):
                raise EnvironmentProblem(
                    "Docker Compose v2 is missing", "install the docker-compose-plugin (docker compose version)"
                )
            if any("Cannot connect to the Docker daemon" in line for line in lines):
                raise EnvironmentProblem("the Docker engine is not reachable", "start it (systemctl start docker)")
            raise ComposeError(f"docker compose {args[0]} failed: {' | '.join(lines[-3:]) or 'no output'}")
        return done

    def validate(self) -> None:
        """Check the stack with `docker compose config -q`."""
        self.run("config", "-q", timeout=60)

    def up(self) -> None:
        self.run("up", "--detach", "--remove-orphans", "--pull", "never")

    def down(self) -> None:
        self.run("down", "--remove-orphans", "--timeout", "30")

    # -- state ---------------------------------------------------------------------------------------
    def container_ids(self) -> list[str]:
        done = self.run("ps", "--all", "--quiet", timeout=60)
        return [line.strip() for line in done.stdout.splitlines() if line.strip()]

    def services(self) -> list[ServiceState]:
        """Give the state of each of the stack's containers (an empty list when nothing runs)."""
        from docker.errors import NotFound

        out = []
        for cid in self.container_ids():
            try:
                attrs = client().api.inspect_container(cid)
            except NotFound:
                continue
            state = attrs["State"]
            started = state.get("StartedAt") if state.get("Running") else None
            uptime = (datetime.now(UTC) - docker_time(started)).total_seconds() if started else None
            labels = attrs["Config"].get("Labels") or {}
            out.append(
                ServiceState(
                    service=labels.get("com.docker.compose.service", attrs["Name"].lstrip("/")),
                    container=attrs["Name"].lstrip("/"),
                    state=state.get("Status", "unknown"),
                    health=(state.get("Health") or {}).get("Status"),
                    exit_code=state.get("ExitCode") if not state.get("Running") else None,
                    restarts=int(attrs.get("RestartCount", 0)),
                    started_at=started,
                    uptime_s=round(max(0.0, uptime), 1) if uptime is not None else None,
                    image=attrs["Config"].get("Image", ""),
                )
            )
        return out

    def logs(self, tail: int = 50) -> str:
        """Give the last `tail` log lines of the stack's containers."""
        done = self.run("logs", "--no-color", "--no-log-prefix", "--tail", str(tail), check=False, timeout=60)
        return (done.stdout + done.stderr).strip()

    def follow_logs(self, tail: int = 50) -> Iterator[str]:
        """Yield log lines as they come (until the stack stops or the caller stops reading)."""
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
        """Give the names of the networks compose made for this project."""
        found = client().networks.list(filters={"label": f"com.docker.compose.project={self.info.project}"})
        return [n.name for n in found]


def docker_time(text: str) -> datetime:
    """Give a Docker timestamp (RFC 3339 with nanoseconds) as an aware datetime."""
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
