"""The one type of the progress reports core functions give; the CLI shows them (cli/output.py's Progress).

A report is a phase or a line of a tool's output (`what` alone), or how far an item is (`done` of
`total`, in the caller's unit: bytes, requests), with an optional `detail` (the engine's last log line).
Core functions take a `Progress` and never print.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Called with what is happening, and how far it is when that is known."""

    def __call__(
        self, what: str, done: float | None = None, total: float | None = None, /, *, detail: str | None = None
    ) -> None: ...


def each_line(say: Callable[[str], None]) -> Progress:
    """Give a Progress that passes each report's text on to `say` (a tool's output, line by line)."""
    return lambda what, done=None, total=None, /, *, detail=None: say(what)


def quiet(what: str, done: float | None = None, total: float | None = None, /, *, detail: str | None = None) -> None:
    """Report nothing (where no one is watching)."""
