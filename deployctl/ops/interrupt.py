"""Ctrl-C and SIGTERM during a workflow that changes the machine: clean up once, stop at a second signal.

Python turns SIGINT into KeyboardInterrupt and lets SIGTERM kill the process outright; `up` needs both
to reach its clean-up, and needs a second Ctrl-C during that clean-up to stop it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

from deployctl import failpoints
from deployctl.errors import DeployctlError


class Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (a KeyboardInterrupt, so every `finally` and clean-up below runs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


class Interrupted(DeployctlError):
    """The workflow was interrupted; the message says what it left running."""

    exit_code = 130


class Guard:
    """Raises Signalled at the first signal; while cleaning up, only at the second one."""

    def __init__(self, notice: Callable[[str], None] | None = None) -> None:
        self.count = 0
        self.cleaning = False
        self.notice = notice or (lambda text: None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.cleaning and self.count < 2:
            self.notice(f"{signal.Signals(signum).name}: finishing the clean-up first (again to stop it at once)")
            return
        raise Signalled(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Guard]:
        """Route SIGINT and SIGTERM to this guard while the block runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in saved:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)

    @contextlib.contextmanager
    def cleaning_up(self) -> Iterator[None]:
        """Mark a clean-up: a first signal in it is noted, a second one stops it."""
        self.cleaning = True
        try:
            yield
        finally:
            self.cleaning = False

    def checkpoint(self, point: str) -> None:
        """Pass the failpoint `point`; a pause there also ends at a signal this guard only notes."""
        seen = self.count
        failpoints.hit(point, wake=lambda: self.count != seen)
