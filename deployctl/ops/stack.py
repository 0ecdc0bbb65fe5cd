"""`up`, `down`, `status`, `logs`: plan, render, start, wait until the model answers; and the checks around it."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployctl import docker, stackdir
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import DeployctlError, InputError, NotRunning
from deployctl.http import request
from deployctl.ops.diagnose import Diagnosis, diagnose
from deployctl.plan import Plan
from deployctl.progress import Progress, each_line
from deployctl.safepath import check_dir
from deployctl.stackdir import StackInfo
from deployctl.targets.compose import COMPOSE

MAX_RESTARTS = 3


@dataclass(frozen=True)
class UpResult:
    endpoint: str
    stack_dir: str
    plan_hash: str
    simulate: bool
    seconds_to_healthy: float
    model_id: str
    api_key: bool
    engine: str
    dialect: str  # tgi or openai: which routes the endpoint serves
    example: str  # a curl command line that asks the endpoint for a short answer (its dialect's route)
    served_name: str
    power: str | None = None
    revision: int = 0
    previous_revision: int | None = None  # the revision this one replaced, when it upgraded a running stack
    removed_projects: list[str] = field(default_factory=list)  # old names of this stack removed by --replace
    # Planned and actual KV-cache tokens and concurrency (ops/startup.py KvReport.as_dict), and what to warn of.
    kv: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


class UpFailed(DeployctlError):
    """The stack did not become healthy: carries the log tail and the likely causes."""

    def __init__(
        self, reason: str, log_tail: str = "", diagnoses: list[Diagnosis] | None = None, stack_dir: str = ""
    ) -> None:
        self.log_tail = log_tail
        self.diagnoses = diagnoses or []
        self.stack_dir = stack_dir
        hint = self.diagnoses[0].hint if self.diagnoses else "read `deployctl logs`; `deployctl down` removes the stack"
        super().__init__(reason, hint)


class Stack:
    """A rendered stack directory and the compose project it describes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.absolute()
        self.info: StackInfo = stackdir.open_stack(self.dir)
        self.compose = docker.ComposeProject(self.dir, self.info.project)


def port_free(bind: str, port: int) -> bool:
    """Give whether a TCP port can be bound on this address now."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InputError(f"serve.bind: {bind} is not an address of this host") from None
            raise
    return True


def probe_health(endpoint: str, timeout: float = 2.0) -> int | None:
    """Give the HTTP status of GET /health, or None when nothing answers."""
    return request(f"{endpoint}/health", timeout)[0]


def ensure_image(plan: Plan, simulate: bool, sim_base: str | None, report: Progress) -> None:
    """Make sure the image the stack runs is on this host (building the simulator's if needed)."""
    if simulate:
        if not docker.image_exists(SIM_IMAGE):
            from deployctl.images.build import build_sim

            # Each line of the build, under one phase.
            build_sim(sim_base, progress=each_line(lambda line: report("building simulator image", detail=line)))
        return
    if not docker.image_exists(plan.engine.image):
        raise docker.ImageMissing(
            plan.engine.image,
            "load it from the offline bundle (deployctl bundle install) or `docker pull` it where a registry is reachable",
        )


def wait_healthy(stack: Stack, timeout_s: float, report: Progress, started: float) -> float:
    """Poll /health until 200; give the seconds it took, or raise UpFailed."""
    endpoint = stack.info.endpoint
    deadline = time.monotonic() + timeout_s
    last_log: str | None = None
    next_log = 0.0
    while True:
        now = time.monotonic()
        status = probe_health(endpoint, timeout=1.0)
        if status == 200:
            return now - started
        if now >= next_log:
            line = stack.compose.last_log_line()
            last_log = line[:160] if line else last_log
            next_log = now + 1.0
            states = stack.compose.services()
            restarts = max((s.restarts for s in states), default=0)
            if restarts >= MAX_RESTARTS:
                raise _failure(stack, f"the engine crashed {restarts} times while starting")
            if states and all(s.state == "exited" for s in states):
                raise _failure(stack, f"the engine exited with code {states[0].exit_code}")
        phase = "loading model" if status == 503 else "starting"
        report(phase, detail=last_log)
        if now >= deadline:
            raise _failure(stack, f"the model did not answer /health within {timeout_s:.0f}s")
        time.sleep(0.25)


def _failure(stack: Stack, reason: str) -> UpFailed:
    tail = stack.compose.logs(tail=30)
    return UpFailed(reason=reason, log_tail=tail, diagnoses=diagnose(tail), stack_dir=str(stack.dir))


def existing(stack_dir: Path) -> Stack:
    """Give the Stack in `stack_dir`, or NotRunning (exit 5) when there is none."""
    check_dir(stack_dir, "stack_dir")
    if not (stack_dir / "compose.yaml").is_file():
        raise NotRunning(f"no stack in {stack_dir}", "run `deployctl up`, or pass --stack-dir DIR")
    return Stack(stack_dir)


@dataclass(frozen=True)
class Down:
    """What `down` did: whether anything of the stack existed (containers or network), and what is left."""

    found: bool
    left: list[str]


def down(stack_dir: Path, project: str | None = None) -> Down | None:
    """Stop and remove the stack's containers and network; give whether there were any and what is left
    (should be nothing), or None when no stack was rendered there (nothing to stop).

    With `project`, remove that project instead: a name this stack ran under before it was renamed.
    """
    from deployctl.ops import owner

    check_dir(stack_dir, "stack_dir")
    if not (stack_dir / "compose.yaml").is_file():
        return None
    stack = Stack(stack_dir)
    if project is not None and project != stack.info.project:
        owner.down_old_project(project, stack.dir)
        return Down(True, [c.name for c in docker.labelled_containers(f"{owner.PROJECT_LABEL}={project}")])
    owner.check_own(stack.info.project, stack.dir)
    found = bool(COMPOSE.status(stack.compose) or stack.compose.networks())
    return Down(found, COMPOSE.down(stack.compose))  # a running monitoring profile goes too


@dataclass(frozen=True)
class StackStatus:
    project: str
    endpoint: str
    simulate: bool
    plan_hash: str
    answering: bool
    ok: bool
    services: list[docker.ServiceState]
    revision: int = 0
    other_projects: list[str] = field(default_factory=list)  # still running from here under an old name
    kv: dict[str, Any] | None = None  # planned and actual KV-cache tokens of the last start (ops/startup.py)
    # What the alerts watch, from the engine's /metrics (monitoring/facts.py), when it answers.
    metrics: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "services": [s.as_dict() for s in self.services]}


def status(stack_dir: Path) -> StackStatus:
    """Give each service's state and whether the stack is healthy.

    Healthy: the endpoint answers /health, at least one service runs, every one runs and none is
    unhealthy (Docker's own healthcheck says "starting" until its first interval has passed).
    """
    from deployctl.ops import owner, startup

    stack = existing(stack_dir)
    owner.check_own(stack.info.project, stack.dir)
    kv = startup.read(stack.dir)
    services = COMPOSE.status(stack.compose)
    answering = probe_health(stack.info.endpoint) == 200
    ok = answering and bool(services) and all(s.state == "running" and s.health != "unhealthy" for s in services)
    metrics = _engine_metrics(stack) if answering else None
    return StackStatus(
        project=stack.info.project,
        endpoint=stack.info.endpoint,
        simulate=stack.info.simulate,
        plan_hash=stack.info.plan_hash,
        answering=answering,
        ok=ok,
        services=services,
        revision=stack.info.revision,
        other_projects=owner.renamed_from(stack.info.project, stack.dir),
        kv=kv.as_dict() if kv else None,
        metrics=metrics,
    )


def _engine_metrics(stack: Stack) -> dict[str, Any] | None:
    """Give the engine's /metrics facts and verdicts (or why they could not be read); None without a plan."""
    from deployctl.ops.probing import engine_facts

    rendered = stackdir.read_stack(stack.dir)
    if rendered is None:
        return None
    facts = engine_facts(stack.info.endpoint, rendered.plan, stack.dir)
    return {"error": facts} if isinstance(facts, str) else dict(facts.as_dict())


def logs(stack_dir: Path, tail: int) -> str:
    """Give the last `tail` lines of the stack's logs."""
    return existing(stack_dir).compose.logs(tail=tail)


def follow_logs(stack_dir: Path, tail: int) -> Iterator[str]:
    """Yield the stack's log lines as they come."""
    return existing(stack_dir).compose.follow_logs(tail=tail)
