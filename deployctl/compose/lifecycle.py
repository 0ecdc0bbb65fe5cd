"""`up`: plan, render, start, wait until the model answers; and the checks around it."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deployctl import deploy
from deployctl.compose.diagnose import Diagnosis, diagnose
from deployctl.compose.stack import ComposeError, ServiceState, Stack
from deployctl.docker_engine import client, image_exists
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.planner.types import Plan
from deployctl.probe.http import request
from deployctl.spec import DeploymentSpec

MAX_RESTARTS = 3


@dataclass(frozen=True)
class Progress:
    phase: str
    elapsed_s: float
    last_log: str | None = None


Report = Callable[[Progress], None]


@dataclass(frozen=True)
class UpResult:
    endpoint: str
    stack_dir: str
    plan_hash: str
    simulate: bool
    seconds_to_healthy: float
    model_id: str
    api_key: bool
    power: str | None = None


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


def _last_line(stack: Stack) -> str | None:
    from docker.errors import DockerException

    for cid in stack.container_ids():
        try:
            raw = client().api.logs(cid, tail=1)
        except DockerException:
            continue
        text = raw.decode(errors="replace").strip()
        if text:
            return text.splitlines()[-1][:160]
    return None


def _running(stack: Stack) -> list[ServiceState]:
    try:
        return [s for s in stack.services() if s.state in ("running", "restarting")]
    except ComposeError:
        return []


def ensure_image(plan: Plan, simulate: bool, sim_base: str | None, report: Report) -> None:
    """Make sure the image the stack runs is on this host (building the simulator's if needed)."""
    if simulate:
        if not image_exists(SIM_IMAGE):
            from deployctl.images.build import build_sim

            start = time.monotonic()
            build_sim(
                sim_base,
                progress=lambda line: report(Progress("building simulator image", time.monotonic() - start, line)),
            )
        return
    if not image_exists(plan.engine.image):
        raise InputError(
            f"image {plan.engine.image} is not on this host",
            "load it from the offline bundle (deployctl bundle install) or `docker pull` it where a registry is reachable",
        )


def wait_healthy(stack: Stack, timeout_s: float, report: Report, started: float) -> float:
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
            last_log = _last_line(stack) or last_log
            next_log = now + 1.0
            states = stack.services()
            restarts = max((s.restarts for s in states), default=0)
            if restarts >= MAX_RESTARTS:
                raise _failure(stack, f"the engine crashed {restarts} times while starting")
            if states and all(s.state == "exited" for s in states):
                raise _failure(stack, f"the engine exited with code {states[0].exit_code}")
        phase = "loading model" if status == 503 else "starting"
        report(Progress(phase, now - started, last_log))
        if now >= deadline:
            raise _failure(stack, f"the model did not answer /health within {timeout_s:.0f}s")
        time.sleep(0.25)


def _failure(stack: Stack, reason: str) -> UpFailed:
    tail = stack.logs(tail=30)
    return UpFailed(reason=reason, log_tail=tail, diagnoses=diagnose(tail), stack_dir=str(stack.dir))


def power_policy(spec: DeploymentSpec, simulate: bool, skip: bool) -> str | None:
    """Apply power.limit_watts before the engine starts; give what was done, for the report."""
    watts = spec.power.limit_watts
    if not watts:
        return None
    if simulate:
        return f"power.limit_watts {watts} W not applied: the engine is simulated"
    if skip:
        return f"power.limit_watts {watts} W skipped (--skip-power)"
    if os.geteuid() != 0:
        raise EnvironmentProblem(
            f"power.limit_watts is {watts} W and setting GPU power limits needs root",
            "run `sudo deployctl up`, or pass --skip-power to start without capping",
        )
    from deployctl.hardware import inventory, nvml
    from deployctl.hardware import power as pw

    with nvml.session(inventory.NVML_LIB) as session:
        applied = pw.apply_policy(session, watts, pw.state_path())
    gpus = ", ".join(str(a.change.index) for a in applied)
    return f"GPU {gpus} capped at {watts} W (read back)"


def up(
    spec: DeploymentSpec,
    simulate: bool = False,
    report: Report | None = None,
    timeout_s: float | None = None,
    sim_base: str | None = None,
    faults: dict[str, str] | None = None,
    skip_power: bool = False,
) -> UpResult:
    """Plan, render and start the stack, then wait until it answers; give where it is."""
    report = report or (lambda p: None)
    started = time.monotonic()
    report(Progress("planning", 0.0))
    plan = deploy.make_plan(spec, simulate=simulate)
    ensure_image(plan, simulate, sim_base, report)
    stack_dir = spec.stack_dir.absolute()
    already = bool((stack_dir / "compose.yaml").is_file() and _running(Stack(stack_dir)))
    if not already and not port_free(plan.bind, plan.port):
        raise InputError(
            f"port {plan.port} on {plan.bind} is in use by another program",
            "choose another with --port or serve.port, or stop the other program (ss -ltnp)",
        )
    power = power_policy(spec, simulate, skip_power)
    report(Progress("rendering", time.monotonic() - started))
    deploy.render_stack(spec, plan, simulate=simulate, faults=faults)
    stack = Stack(stack_dir)
    stack.validate()
    report(Progress("starting containers", time.monotonic() - started))
    try:
        stack.up()
    except ComposeError as exc:
        found = diagnose(exc.message)
        raise UpFailed(
            reason=exc.message, log_tail=stack.logs(tail=30), diagnoses=found, stack_dir=str(stack.dir)
        ) from None
    limit = timeout_s if timeout_s is not None else stack.info.load_timeout_s
    seconds = wait_healthy(stack, limit, report, started)
    return UpResult(
        endpoint=stack.info.endpoint,
        stack_dir=str(stack.dir),
        plan_hash=plan.digest(),
        simulate=simulate,
        seconds_to_healthy=round(seconds, 2),
        model_id=plan.model_id,
        api_key=plan.api_key,
        power=power,
    )


def down(stack_dir: Path) -> list[str]:
    """Stop and remove the stack's containers and network; give what is left (should be nothing)."""
    stack = Stack(stack_dir)
    stack.down()
    left = [s.container for s in stack.services()] + stack.networks()
    return left
