"""Outside tools (docker compose, helm, kubectl, systemctl, mmdebstrap) run one way: `run`, and one error.

As python-on-whales does for Docker: the command either gives its output or raises `ToolError`, which
carries the command, its exit code, stdout and stderr, so that each facade (docker/, kube/) maps the
tool's own words to an error the user acts on. A missing binary is `ToolMissing` (a host problem), a
command past its time limit is `ToolTimedOut`; either way the child is stopped (SIGTERM, then SIGKILL),
also when the caller is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from deployctl.errors import DeployctlError, EnvironmentProblem

# How long a child may take to exit after SIGTERM before it is killed.
STOP_GRACE_S = 10.0


def last_line(text: str) -> str:
    """Give the last non-empty line of a tool's output, or "(no output)"."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


class ToolError(DeployctlError):
    """An outside tool failed: the command, its exit code (None when it was stopped), stdout and stderr."""

    def __init__(
        self,
        command: Sequence[str],
        returncode: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr.strip()
        verb = next((a for a in self.command[1:] if not a.startswith("-")), "")
        what = f"{Path(self.command[0]).name} {verb}".strip() if self.command else "the command"
        super().__init__(message or f"{what} failed: {last_line(self.stderr or stdout)}", hint)


class ToolTimedOut(ToolError):
    """The tool did not finish within its time limit and was stopped."""

    def __init__(self, command: Sequence[str], timeout: float, stdout: str = "", stderr: str = "") -> None:
        name = Path(command[0]).name if command else "the command"
        super().__init__(command, None, stdout, stderr, message=f"{name} did not finish in {timeout:.0f}s")
        self.timeout = timeout


class ToolMissing(EnvironmentProblem):
    """The tool is not installed (not on PATH, or the path given does not exist)."""

    def __init__(self, tool: str, hint: str | None = None) -> None:
        super().__init__(f"{tool} is not installed", hint)
        self.tool = tool


def find(tool: str, hint: str | None = None) -> str:
    """Give the path of `tool` on PATH; ToolMissing when there is none."""
    found = shutil.which(tool)
    if not found:
        raise ToolMissing(tool, hint)
    return found


def stop(proc: subprocess.Popen[str], grace_s: float = STOP_GRACE_S) -> None:
    """Stop a child: SIGTERM, and SIGKILL when it has not exited after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spawn(
    command: Sequence[str], *, stdin: bool, merged: bool, cwd: Path | None, env: Mapping[str, str] | None
) -> subprocess.Popen[str]:
    """Start the command with its output piped (stderr into stdout when `merged`); ToolMissing when absent."""
    try:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
        )
    except FileNotFoundError:
        raise ToolMissing(Path(command[0]).name) from None


def start(
    command: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a tool whose output is read as it comes (stdout and stderr as one stream); ToolMissing when absent.

    `env` is added to this process's environment.
    """
    return _spawn(command, stdin=False, merged=True, cwd=cwd, env=env)


def run(
    command: Sequence[str],
    *,
    timeout: float | None,
    stdin: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
    grace_s: float = STOP_GRACE_S,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Give the finished command (stdout, stderr, exit code); ToolError when it fails and `check` is set.

    `env` is added to this process's environment. ToolTimedOut past `timeout` seconds, ToolMissing
    when the binary is not there. On any exception while waiting (Ctrl-C included) the child is
    stopped before the exception goes on.
    """
    cmd = list(command)
    proc = _spawn(cmd, stdin=stdin is not None, merged=False, cwd=cwd, env=env)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace_s)
        out, err = proc.communicate()
        raise ToolTimedOut(cmd, timeout or 0, out or "", err or "") from None
    except BaseException:
        stop(proc, grace_s)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and done.returncode != 0:
        raise ToolError(cmd, done.returncode, out, err)
    return done
