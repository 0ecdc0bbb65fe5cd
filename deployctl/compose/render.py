"""Render a Plan into a stack directory (compose.yaml, .env, plan.json, stack.json), atomically."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployctl import __version__, templating
from deployctl.engines.simulator import SIM_IMAGE, fault_env, sim_env
from deployctl.errors import InputError
from deployctl.planner.types import Plan

SERVICE = "engine"
# Same check for the engine and the simulator: both images carry curl.
HEALTH_COMMAND = "curl -fsS -o /dev/null http://127.0.0.1:{port}{path} || exit 1"
FILES = ("compose.yaml", ".env", "plan.json", "stack.json")


@dataclass(frozen=True)
class StackInfo:
    """What a stack directory says about itself (stack.json)."""

    project: str
    service: str
    endpoint: str
    simulate: bool
    plan_hash: str
    load_timeout_s: int

    @classmethod
    def read(cls, stack_dir: Path) -> StackInfo:
        try:
            data = json.loads((stack_dir / "stack.json").read_text())
            return cls(**data)
        except FileNotFoundError:
            raise InputError(
                f"{stack_dir} is not a deployctl stack (no stack.json)",
                "run `deployctl render` or `deployctl up` first",
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{stack_dir}/stack.json is unreadable: {exc}") from None


@dataclass(frozen=True)
class RenderedStack:
    """What a stack directory records: where it listens, its plan, and the API key in its .env."""

    info: StackInfo
    plan: Plan
    api_key: str | None


def read_stack(stack_dir: Path) -> RenderedStack | None:
    """Give what `stack_dir` records, or None when it is not a deployctl stack."""
    if not (stack_dir / "stack.json").is_file():
        return None
    info = StackInfo.read(stack_dir)
    try:
        plan = Plan.model_validate_json((stack_dir / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{stack_dir}/plan.json is unreadable: {exc}") from None
    key = None
    env_file = stack_dir / ".env"
    if plan.api_key and env_file.is_file():
        # The inverse of templates/env.j2: DEPLOYCTL_API_KEY='...'
        for line in env_file.read_text().splitlines():
            if line.startswith("DEPLOYCTL_API_KEY="):
                key = line.split("=", 1)[1].strip().strip("'")
    return RenderedStack(info, plan, key)


def endpoint(plan: Plan) -> str:
    """Give the URL this host reaches the stack at."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(plan.bind, plan.bind)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{plan.port}"


def load_timeout_s(plan: Plan, simulate: bool) -> int:
    """Give how long a start may take: the simulator is quick; TGI reads ~1 GB/s and warms up."""
    if simulate:
        return 60
    return 120 + int(sum(g.weights for g in plan.gpus) / 1e9 * 10)


def _escape(value: str) -> str:
    return value.replace("$", "$$")  # compose interpolates $VAR in the file


def _port_mapping(plan: Plan) -> str:
    bind = f"[{plan.bind}]" if ":" in plan.bind else plan.bind
    return f"{bind}:{plan.port}:{plan.engine.container_port}"


def context(
    plan: Plan,
    simulate: bool,
    sim_image: str = SIM_IMAGE,
    api_key: str | None = None,
    faults: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Give the values the templates are rendered from; all decisions are made here."""
    engine = plan.engine
    env = dict(engine.env)
    if simulate:
        env.update(sim_env(plan))
        env.update(fault_env(faults or {}))
    elif faults:
        raise InputError("--sim-fault needs --simulate")
    timeout = load_timeout_s(plan, simulate)
    return {
        "version": __version__,
        "plan_hash": plan.digest(),
        "simulate": simulate,
        "project": plan.name,
        "service": SERVICE,
        "engine": "tgi-simulator" if simulate else engine.kind,
        "image": sim_image if simulate else engine.image,
        "args": [_escape(a) for a in engine.args],
        "env": sorted((k, _escape(v)) for k, v in env.items()),
        "api_key": api_key if plan.api_key else None,
        "port_mapping": _port_mapping(plan),
        "model_mount": engine.model_mount,
        "model_source": _escape(plan.model.path or ""),
        "shm_size": engine.shm_size,
        "health_command": HEALTH_COMMAND.format(port=engine.container_port, path=engine.health_path),
        "start_period": timeout,
        "stop_grace": 10 if simulate else 90,
        "gpu_device_ids": None if simulate else plan.device_ids,
    }


def render(
    plan: Plan,
    simulate: bool = False,
    api_key: str | None = None,
    sim_image: str = SIM_IMAGE,
    faults: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """Give the stack's files, byte for byte; the same input always gives the same bytes."""
    if plan.api_key and not api_key:
        raise InputError("the spec asks for an API key but none was resolved")
    if api_key is not None and any(c in api_key for c in "'\n\r\\"):
        raise InputError("the API key holds a quote, backslash or newline", "use letters, digits and -_.~+/=")
    ctx = context(plan, simulate, sim_image, api_key, faults)
    info = StackInfo(
        project=plan.name,
        service=SERVICE,
        endpoint=endpoint(plan),
        simulate=simulate,
        plan_hash=ctx["plan_hash"],
        load_timeout_s=ctx["start_period"],
    )
    return {
        "compose.yaml": templating.render("compose.yaml.j2", **ctx).encode(),
        ".env": templating.render("env.j2", **ctx).encode(),
        "plan.json": plan.canonical_json().encode(),
        "stack.json": (json.dumps(info.__dict__, indent=2, sort_keys=True) + "\n").encode(),
    }


def write_stack(files: dict[str, bytes], stack_dir: Path, marker: str = "stack.json", what: str = "stack_dir") -> Path:
    """Write the files as `stack_dir`, replacing an existing stack whole or not at all.

    Names may hold `/` (a chart's templates/); a non-empty directory is replaced only when it
    holds `marker`, the file that says deployctl wrote it.
    """
    stack_dir = stack_dir.absolute()
    parent = stack_dir.parent
    if stack_dir.exists() and not stack_dir.is_dir():
        raise InputError(f"{what} {stack_dir} exists and is not a directory")
    if stack_dir.is_dir() and any(stack_dir.iterdir()) and not (stack_dir / marker).exists():
        raise InputError(f"{what} {stack_dir} holds other files", "choose an empty or new directory")
    created_parent = not parent.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{stack_dir.name}.new-", dir=parent))
    except OSError as exc:
        raise InputError(
            f"{what} {stack_dir}: cannot write there: {exc.strerror}", "choose a writable directory"
        ) from None
    try:
        for name, data in files.items():
            mode = 0o600 if name == ".env" else 0o644
            path = tmp / name  # names are deployctl's own, never user input
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        _swap_in(tmp, stack_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent:
            shutil.rmtree(parent, ignore_errors=True)
        raise
    return stack_dir


def _swap_in(new: Path, target: Path) -> None:
    """Put `new` in place of `target`; an old stack is moved aside first, then removed."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
