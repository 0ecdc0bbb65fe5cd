"""`up` on a workstation that must not break, and `rollback`.

`up` renders the new stack beside the running one (the diff is what `--dry-run` shows), keeps the
running revision as a good copy, swaps the containers, and waits for /health with the plan's budget.
A new revision that does not answer is replaced by the last good one (files, images, containers).
SIGINT or SIGTERM at any point leaves either the previous good stack running or nothing of the new one.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployctl import docker, stackdir, targets
from deployctl.engines import dialects
from deployctl.errors import InputError, NotRunning
from deployctl.interrupt import Guard, Interrupted, Signalled
from deployctl.ops import owner, planning, startup
from deployctl.ops.diagnose import Diagnosis, diagnose
from deployctl.ops.power_policy import apply_policy
from deployctl.ops.stack import (
    Stack,
    UpFailed,
    UpResult,
    ensure_image,
    existing,
    port_free,
    probe_health,
    wait_healthy,
)
from deployctl.plan import Plan
from deployctl.progress import Progress, quiet
from deployctl.spec import DeploymentSpec
from deployctl.stackdir import GoodCopy
from deployctl.targets.compose import COMPOSE


class RolledBack(UpFailed):
    """The new revision did not answer; the last good one was restored and answers."""

    def __init__(self, reason: str, log_tail: str, diagnoses: list[Diagnosis]) -> None:
        super().__init__(reason, log_tail, diagnoses)
        if not diagnoses:
            self.hint = (
                "the log lines above are the failed revision's; fix the spec or image and run `deployctl up` again"
            )


def open_to_network(bind: str, api_key: bool) -> bool:
    """Give whether a stack bound to `bind` serves anyone on the network without a key."""
    return not ipaddress.ip_address(bind).is_loopback and not api_key


def check_exposure(spec: DeploymentSpec, plan: Plan, allow_open: bool) -> None:
    """Refuse a non-loopback bind without an API key unless it is allowed on purpose."""
    if open_to_network(plan.bind, plan.api_key) and not (allow_open or spec.serve.allow_open):
        raise InputError(
            f"serve.bind {plan.bind} would serve the model to the network without an API key",
            "set serve.api_key_env or serve.api_key_file, or pass --allow-open (serve.allow_open: true) to serve it open on purpose",
        )


@dataclass(frozen=True)
class UpOptions:
    """How an `up` goes about it, beyond the spec: `up`'s flags."""

    timeout_s: float | None = None  # how long to wait for /health (None: the plan's start budget)
    sim_base: str | None = None  # the base image to build the simulator's from, if it is missing
    faults: dict[str, str] | None = None  # --sim-fault: what the simulator rehearses
    skip_power: bool = False  # leave the GPUs' power limits as they are
    allow_open: bool = False  # serve a non-loopback bind without an API key, on purpose
    replace: bool = False  # remove the project this stack ran under before its name changed
    dry_run: bool = False  # say what would change; change nothing


@dataclass(frozen=True)
class Preview:
    """What `up --dry-run` found: the diff between the running stack and the new one."""

    stack_dir: str
    project: str
    running: bool
    running_revision: int | None
    next_revision: int
    changed: bool
    diff: str
    renamed_from: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _images(stack: Stack) -> dict[str, str]:
    return {s.image: s.image_id for s in _states(stack) if s.image_id}


def _states(stack: Stack) -> list[docker.ContainerState]:
    return docker.labelled_containers(f"{owner.PROJECT_LABEL}={stack.info.project}")


def is_running(project: str) -> bool:
    found = docker.labelled_containers(f"{owner.PROJECT_LABEL}={project}")
    return any(c.state in ("running", "restarting") for c in found)


def started_with(stack_dir: Path) -> tuple[str, ...]:
    """Give how `up` started the stack in `stack_dir` (stack.json's mode): what a bare `up` keeps."""
    return stackdir.started_with(stack_dir)


def up(
    spec: DeploymentSpec,
    options: UpOptions | None = None,
    *,
    spec_path: Path | None = None,
    simulate: bool = False,
    report: Progress | None = None,
    mode: tuple[str, ...] = (),
) -> UpResult | Preview:
    """Plan, render and start (or upgrade) the stack, then wait until it answers; give where it is.

    `mode` is how this `up` was asked to start the stack (`simulate`, `engine=vllm`, ...): stack.json
    keeps it, and a bare `up` later keeps it too.
    """
    report = report or quiet
    guard = Guard(notice=report)
    with guard.installed():
        run = _Up(spec, spec_path, simulate, report, guard)
        run.mode = mode
        return run.go(options or UpOptions())


class _Up:
    """One `up`: what ran before, what is being started, and how far it got (for clean-up)."""

    def __init__(
        self, spec: DeploymentSpec, spec_path: Path | None, simulate: bool, report: Progress, guard: Guard
    ) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.simulate = simulate
        self.report = report
        self.guard = guard
        self.dir = spec.stack_dir.absolute()
        self.started = time.monotonic()
        self.phase = "starting"
        self.touched = False  # files or containers of the new revision may exist
        self.before: dict[str, bytes] | None = None  # the rendered files found (restored if nothing ran)
        self.good: GoodCopy | None = None  # what to go back to when the new revision fails
        self.mode: tuple[str, ...] = ()  # how this `up` was asked to start the stack (recorded in stack.json)

    def _say(self, phase: str) -> None:
        self.phase = phase
        self.report(phase)

    def go(self, options: UpOptions) -> UpResult | Preview:
        try:
            self.guard.checkpoint("before-start")
            self._say("planning")
            plan = planning.make_plan(self.spec, simulate=self.simulate)
            check_exposure(self.spec, plan, options.allow_open)
            owner.check_free(plan.name, self.dir)
            files = self._render(plan, options.faults)
            self.before = stackdir.rendered_files(self.dir)
            was = stackdir.info_of(self.before) if self.before else None
            running = was is not None and is_running(was.project)
            unchanged = stackdir.same_render(self.before, files)
            revision = stackdir.next_revision(self.before, files, self.dir)
            if options.dry_run:
                return Preview(
                    stack_dir=str(self.dir),
                    project=plan.name,
                    running=running,
                    running_revision=was.revision if running and was else None,
                    next_revision=revision,
                    changed=not unchanged,
                    diff=stackdir.changes(self.before, files),
                    renamed_from=owner.renamed_from(plan.name, self.dir),
                )
            stackdir.check_writable(self.dir)
            removed = owner.check_renamed(plan.name, self.dir, options.replace)
            running = running and not (was is not None and was.project in removed)
            if not running and not port_free(plan.bind, plan.port):
                raise InputError(
                    f"port {plan.port} on {plan.bind} is in use by another program",
                    "choose another with --port or serve.port, or stop the other program (ss -ltnp)",
                )
            self._say("checking the image")
            self.guard.checkpoint("image-build")
            ensure_image(plan, self.simulate, options.sim_base, self.report)
            power = apply_policy(self.spec, self.simulate, options.skip_power)
            if running:
                self._keep_running_as_good()
            seconds = self._start(files, revision, options.timeout_s)
        except Signalled as sig:
            raise self._interrupted(sig) from None
        stack = Stack(self.dir)
        stackdir.record_good(self.dir, _images(stack))
        kv = startup.compare(plan, stack.compose.logs(tail=startup.LOG_LINES), stack.info.revision)
        startup.record(self.dir, kv)
        return UpResult(
            endpoint=stack.info.endpoint,
            stack_dir=str(self.dir),
            plan_hash=plan.digest(),
            simulate=self.simulate,
            seconds_to_healthy=round(seconds, 2),
            model_id=plan.model_id,
            api_key=plan.api_key,
            engine=plan.engine.kind,
            dialect=plan.engine.dialect,
            served_name=plan.served_name,
            example=dialects.get(plan.engine.dialect).example(
                stack.info.endpoint, plan.served_name, with_key=plan.api_key
            ),
            power=power,
            revision=stack.info.revision,
            previous_revision=was.revision if running and was else None,
            removed_projects=removed,
            kv=kv.as_dict(),
            warnings=[w for w in [kv.warning()] if w],
        )

    def _render(self, plan: Plan, faults: dict[str, str] | None) -> dict[str, bytes]:
        options = planning.stack_options(
            self.spec, self.dir, simulate=self.simulate, faults=faults, spec_path=self.spec_path
        )
        return targets.render(plan, "compose", options)

    def _keep_running_as_good(self) -> None:
        """Keep the running revision as the good copy when it answers now; else the last one that did.

        What a failed upgrade goes back to is what was running, never merely the highest-numbered copy.
        """
        stack = Stack(self.dir)
        if probe_health(stack.info.endpoint) == 200:
            stackdir.record_good(self.dir, _images(stack))
            self.good = stackdir.read_good(self.dir, revision=stack.info.revision)
        else:
            self.good = stackdir.last_good(self.dir)

    def _start(self, files: dict[str, bytes], revision: int, timeout_s: float | None) -> float:
        self._say("rendering")
        self.touched = True
        stackdir.write_stack(files, self.dir, revision=revision, spec=self.spec_path, mode=self.mode)
        stack = Stack(self.dir)
        limit = timeout_s if timeout_s is not None else stack.info.load_timeout_s
        try:
            stack.compose.validate()
            self._say("creating containers")
            stack.compose.create()
            self._say("containers created")
            self.guard.checkpoint("containers-created")
            self._say("starting containers")
            COMPOSE.up(stack.compose)
            self._say("waiting for /health")
            self.guard.checkpoint("waiting-health")
            return wait_healthy(stack, limit, self.report, self.started)
        except docker.ComposeError as exc:
            failure = UpFailed(
                reason=exc.message, log_tail=stack.compose.logs(tail=30), diagnoses=diagnose(exc.message)
            )
        except UpFailed as exc:
            failure = exc
        if self.good is None:
            failure.stack_dir = str(self.dir)  # nothing ran before: leave it for inspection
            raise failure
        stackdir.save_failed(self.dir)
        signals = self.guard.count
        restored = self._restore(self.good)
        outcome = (
            f"revision {revision} failed: {failure.message}; rolled back to revision {restored.info.revision}, "
            f"which answers at {restored.info.endpoint}"
        )
        if self.guard.count > signals:  # a first Ctrl-C during the rollback: it was finished, then we stop
            raise Interrupted(f"interrupted while rolling back, which was finished first: {outcome}")
        raise RolledBack(
            reason=outcome,
            log_tail=failure.log_tail,
            diagnoses=failure.diagnoses,
        )

    def _restore(self, good: GoodCopy) -> Stack:
        """Put the good copy back (files, images, containers) and wait until it answers."""
        with self.guard.cleaning_up():
            self._say(f"rolling back to revision {good.info.revision}")
            return restore(self.dir, good, self.guard, self.report, self.started)

    def _interrupted(self, sig: Signalled) -> Interrupted:
        """Clean up after a first signal; give the error that says what is left running."""
        what = f"interrupted ({sig.name}) while {self.phase}"
        if self.guard.count >= 2:  # the first one was noted during the rollback: this one stops it
            return self._stopped(what, sig)
        try:
            with self.guard.cleaning_up():
                if not self.touched:
                    return Interrupted(f"{what}: nothing was changed; what ran before still runs")
                if self.good is not None:
                    stack = self._restore(self.good)
                    return Interrupted(
                        f"{what}: restored revision {stack.info.revision}, which answers at {stack.info.endpoint}"
                    )
                self._say("removing the new stack")
                remove_new(self.dir, self.before)
                return Interrupted(f"{what}: removed the new stack's containers and network; nothing of it runs")
        except Signalled as again:
            return self._stopped(what, again)
        except (UpFailed, docker.DockerFailed) as exc:
            return Interrupted(f"{what}: the clean-up failed: {exc.message}", "`deployctl down` removes what is left")

    def _stopped(self, what: str, again: Signalled) -> Interrupted:
        return Interrupted(
            f"{what}, then {again.name} again: stopped the clean-up at once, containers may be left",
            f"`deployctl status --stack-dir {self.dir}` shows them; `deployctl rollback` or `deployctl down` tidies up",
        )


def remove_new(stack_dir: Path, before: dict[str, bytes] | None) -> None:
    """Remove the new stack's containers and network, and put the files found before back."""
    if (stack_dir / "compose.yaml").is_file():
        Stack(stack_dir).compose.down()
    if before is not None:
        stackdir.write_stack(before, stack_dir)
    else:
        stackdir.remove_rendered(stack_dir)


def restore(stack_dir: Path, good: GoodCopy, guard: Guard, report: Progress, started: float) -> Stack:
    """Replace whatever runs from `stack_dir` by the good copy; give it once it answers (UpFailed if not)."""
    if (stack_dir / "compose.yaml").is_file():
        Stack(stack_dir).compose.down()
    guard.checkpoint("rollback")
    for ref, image_id in good.images.items():
        # The tag may point at a newer image now (a bundle upgrade): give it back the image that ran.
        if docker.image_exists(image_id) and (not docker.image_exists(ref) or docker.image(ref).id != image_id):
            docker.tag_image(image_id, ref)
    stackdir.write_stack(good.files, stack_dir)
    stack = Stack(stack_dir)
    stack.compose.up()
    guard.checkpoint("rollback-waiting")
    wait_healthy(stack, stack.info.load_timeout_s, report, started)
    return stack


@dataclass(frozen=True)
class RollbackResult:
    stack_dir: str
    endpoint: str
    revision: int
    from_revision: int | None
    seconds: float


def rollback(stack_dir: Path, report: Progress | None = None) -> RollbackResult:
    """Go back to the revision that ran before the one in `stack_dir`; give it once it answers."""
    report = report or quiet
    stack_dir = stack_dir.absolute()
    current = existing(stack_dir)
    owner.check_own(current.info.project, stack_dir)
    good = stackdir.previous(stack_dir, current.info.revision)
    if good is None:
        raise NotRunning(
            f"{stack_dir} keeps no revision that ran before revision {current.info.revision}",
            "a revision is kept each time `deployctl up` sees it answer; `deployctl up` starts a new one",
        )
    started = time.monotonic()
    guard = Guard(notice=report)
    with guard.installed(), guard.cleaning_up():
        try:
            stack = restore(stack_dir, good, guard, report, started)
        except Signalled as sig:
            raise Interrupted(
                f"rollback interrupted ({sig.name}) twice: stopped at once",
                f"run `deployctl rollback --stack-dir {stack_dir}` again",
            ) from None
    stackdir.went_back(stack_dir, stack.info.revision)
    return RollbackResult(
        stack_dir=str(stack_dir),
        endpoint=stack.info.endpoint,
        revision=stack.info.revision,
        from_revision=current.info.revision,
        seconds=round(time.monotonic() - started, 2),
    )
