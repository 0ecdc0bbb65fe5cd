"""The errors a user can cause or meet, each with the exit code the CLI returns.

Exit codes (the table in README and `deployctl --help`): 0 ok, 1 failed check, 2 bad input,
3 host problem, 4 does not fit, 5 not running / not found, 130 interrupted.
"""

from __future__ import annotations


class DeployctlError(Exception):
    """Something the operator can act on: printed as one line, no traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(DeployctlError):
    """Bad input (spec file, flag, model directory): nothing was changed."""

    exit_code = 2


class PlanRefused(DeployctlError):
    """The model does not fit the GPUs; the message says what would."""

    exit_code = 4


class EnvironmentProblem(DeployctlError):
    """The host lacks something (Docker engine, NVIDIA driver, permission)."""

    exit_code = 3


class NotRunning(DeployctlError):
    """The stack (or endpoint) asked about is not there or not running: `health`, `status`, `logs`."""

    exit_code = 5
