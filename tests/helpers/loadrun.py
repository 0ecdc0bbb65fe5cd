"""A load run against a stack under test (`bench`, `power tune`), as an operator types it, with its JSON result."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

Run = Callable[..., subprocess.CompletedProcess[str]]


def measured(run: Run, command: str) -> dict[str, Any]:
    """Give the `--json` result of `deployctl COMMAND` run by `run` (an e2e Project's), asserting it exited 0.

    A load run takes minutes on a busy host: it may take five."""
    done = run(*shlex.split(command), "--json", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
