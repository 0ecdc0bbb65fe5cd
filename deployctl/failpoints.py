"""Named failpoints: places in the code that a test can make pause or fail, through one environment variable.

Modelled on etcd's gofail and TiKV's fail-rs. The code passes a point by name (`hit("image-build")`);
nothing happens unless DEPLOYCTL_FAILPOINTS names that point, so in production a point costs one
dictionary lookup. A test sets, for the process under test,

    DEPLOYCTL_FAILPOINTS="image-build=pause(/tmp/x);rollback=error(the disk is gone)"

Actions:
- `pause(DIR)`: create DIR/<point>.reached (holding the process id), then wait until DIR/<point>.release
  exists, until a signal handler raises (Ctrl-C, SIGTERM), or until the caller's `wake()` says so (a
  signal that a handler only noted). A test waits for `.reached`, then signals or releases: the two
  sides meet on an event, never on timing. A forgotten pause ends on its own after PAUSE_LIMIT_S.
- `error(MESSAGE)`: raise FailpointError(MESSAGE) there, as if the step had failed.
- `off`: nothing (the same as leaving the point out).
A count in front, `2*pause(DIR)`, makes the action happen that many times in the process, then stop.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from deployctl.errors import DeployctlError

ENV = "DEPLOYCTL_FAILPOINTS"
PAUSE_LIMIT_S = 120.0  # a forgotten pause ends on its own
POLL_S = 0.02  # how often a pause looks for its release file (a signal ends it at once)

_TERM = re.compile(r"^(?:(?P<count>\d+)\*)?(?P<action>pause|error|off)(?:\((?P<arg>.*)\))?$", re.DOTALL)


class FailpointError(DeployctlError):
    """A failure a test injected at a named point (exit 1: the step failed)."""

    exit_code = 1


@dataclass(frozen=True)
class Action:
    kind: str  # pause | error | off
    arg: str
    count: int | None  # None: every time


@cache
def parse(text: str) -> dict[str, Action]:
    """Give each point's action from DEPLOYCTL_FAILPOINTS's text; a malformed term is an error a test sees."""
    actions: dict[str, Action] = {}
    for term in filter(None, (t.strip() for t in text.split(";"))):
        name, sep, spec = term.partition("=")
        found = _TERM.match(spec.strip())
        if not sep or not name.strip() or found is None:
            raise DeployctlError(f"{ENV}: {term!r} is not POINT=ACTION (pause(DIR), error(MESSAGE), off)")
        kind, arg = found["action"], found["arg"] or ""
        if kind == "pause" and not arg:
            raise DeployctlError(f"{ENV}: {term!r}: pause needs the folder for its files: pause(DIR)")
        count = int(found["count"]) if found["count"] else None
        actions[name.strip()] = Action(kind, arg, count)
    return actions


_used: dict[str, int] = {}


def hit(name: str, wake: Callable[[], bool] | None = None) -> None:
    """Pass the point `name`: nothing, unless DEPLOYCTL_FAILPOINTS asks this point to pause or fail."""
    text = os.environ.get(ENV)
    if not text:
        return
    action = parse(text).get(name)
    if action is None or action.kind == "off":
        return
    if action.count is not None:
        if _used.get(name, 0) >= action.count:
            return
        _used[name] = _used.get(name, 0) + 1
    if action.kind == "error":
        raise FailpointError(action.arg or f"failpoint {name}")
    _pause(name, Path(action.arg), wake or (lambda: False))


def _pause(name: str, folder: Path, wake: Callable[[], bool]) -> None:
    release = folder / f"{name}.release"
    reached = folder / f"{name}.reached"
    staged = folder / f".{name}.reached.{os.getpid()}"
    staged.write_text(f"{os.getpid()}\n")
    os.replace(staged, reached)  # whole or absent: the test reads the pid once the file is there
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not release.exists() and not wake() and time.monotonic() < deadline:
        time.sleep(POLL_S)  # a signal handler that raises ends the pause here


def reached(folder: Path, name: str) -> Path:
    """Give the file a pause at `name` creates in `folder` once the point is reached (for tests)."""
    return folder / f"{name}.reached"


def release(folder: Path, name: str) -> None:
    """Let a pause at `name` go on (for tests)."""
    (folder / f"{name}.release").touch()
