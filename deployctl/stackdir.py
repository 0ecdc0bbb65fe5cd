"""A rendered stack on disk (compose.yaml, .env, plan.json, stack.json): read it, write it whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from deployctl.boundedparse import shown
from deployctl.errors import InputError
from deployctl.planner.types import Plan
from deployctl.probe.http import check_url
from deployctl.safepath import check_dir, check_name

SECRET_FILE = ".env"
API_KEY_NAME = "DEPLOYCTL_API_KEY"  # the key's name in .env (templates/env.j2 writes it)


@dataclass(frozen=True)
class StackInfo:
    """What a stack directory says about itself (stack.json)."""

    project: str
    service: str
    endpoint: str
    simulate: bool
    plan_hash: str
    load_timeout_s: int

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def read(cls, stack_dir: Path) -> StackInfo:
        try:
            data = json.loads((stack_dir / "stack.json").read_text())
            return cls(**_checked_fields(cls, data, stack_dir / "stack.json"))
        except FileNotFoundError:
            raise InputError(
                f"{stack_dir} is not a deployctl stack (no stack.json)",
                "run `deployctl render` or `deployctl up` first",
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"{stack_dir}/stack.json is unreadable: {exc}") from None


def _checked_fields(cls: type, data: object, where: Path) -> dict[str, Any]:
    """Give stack.json's fields when each has the type StackInfo declares; an InputError otherwise."""
    kinds = {"str": str, "bool": bool, "int": int}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    for f in fields(cls):
        value = data.get(f.name)
        kind = kinds[str(f.type)]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: {f.name} should be {f.type}, got {shown(json.dumps(value))}")
    check_name(data["project"], f"{where}: project")
    check_url(data["endpoint"], f"{where}: endpoint")
    return {f.name: data[f.name] for f in fields(cls)}


@dataclass(frozen=True)
class RenderedStack:
    """What a stack directory records: where it listens, its plan, and the API key in its .env."""

    dir: Path
    info: StackInfo
    plan: Plan
    api_key: str | None


def open_stack(stack_dir: Path) -> StackInfo:
    """Give the info of the stack in `stack_dir`; InputError when none was rendered there."""
    stack_dir = check_dir(stack_dir, "stack_dir").absolute()
    if not (stack_dir / "compose.yaml").is_file():
        raise InputError(f"{stack_dir} holds no compose.yaml", "run `deployctl render` or `deployctl up` first")
    return StackInfo.read(stack_dir)


def read_stack(stack_dir: Path) -> RenderedStack | None:
    """Give what `stack_dir` records, or None when it is not a deployctl stack."""
    check_dir(stack_dir, "stack_dir")
    if not (stack_dir / "stack.json").is_file():
        return None
    info = StackInfo.read(stack_dir)
    try:
        plan = Plan.model_validate_json((stack_dir / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{stack_dir}/plan.json is unreadable: {exc}") from None
    key = None
    env_file = stack_dir / SECRET_FILE
    if plan.api_key and env_file.is_file():
        # The inverse of templates/env.j2: DEPLOYCTL_API_KEY='...'
        for line in env_file.read_text().splitlines():
            if line.startswith(f"{API_KEY_NAME}="):
                key = line.split("=", 1)[1].strip().strip("'")
    return RenderedStack(stack_dir.absolute(), info, plan, key)


def write_stack(files: dict[str, bytes], stack_dir: Path, marker: str = "stack.json", what: str = "stack_dir") -> Path:
    """Write the files as `stack_dir`, replacing an existing stack whole or not at all.

    Names may hold `/` (a chart's templates/); a non-empty directory is replaced only when it
    holds `marker`, the file that says deployctl wrote it.
    """
    stack_dir = check_dir(stack_dir, what).absolute()
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
            mode = 0o600 if name == SECRET_FILE else 0o644
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
