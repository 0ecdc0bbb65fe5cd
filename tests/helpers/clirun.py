"""Run deployctl as a user would in a folder of the test's choosing (one with no deployctl.yaml: only the flags
say what to do)."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner, Result

from deployctl.cli import cli


def invoke_in(cwd: Path, args: list[str], env: dict[str, str] | None = None) -> Result:
    """Give the result of `deployctl ARGS` run in `cwd` (the working directory is put back after)."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args, env=env)
    finally:
        os.chdir(old)
