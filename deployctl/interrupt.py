"""Ctrl-C and SIGTERM during a workflow that changes the machine: clean up once, stop at a second signal.

Python turns SIGINT into KeyboardInterrupt and lets SIGTERM kill the process outright; `up` needs both
to reach its clean-up, and needs a second Ctrl-C during that clean-up to stop it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from deployctl.errors import DeployctlError

# TEST-ONLY: make a workflow stop at a named point until a signal arrives, so that the e2e tests can
# interrupt `up` exactly there. DEPLOYCTL_TEST_PAUSE_AT names the point; when it is reached, the file
# DEPLOYCTL_TEST_PAUSE_FILE is created (the test waits for it). Never set these in production.
PAUSE_AT_ENV = "DEPLOYCTL_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "DEPLOYCTL_TEST_PAUSE_FILE"
PAUSE_LIMIT_S = 120  # a forgotten test pause ends on its own
POINTS = ("before-start", "image-build", "containers-created", "waiting-health", "rollback")


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
        """TEST-ONLY pause (see PAUSE_AT_ENV): wait here for a signal when the tests ask for this point."""
        if os.environ.get(PAUSE_AT_ENV) != point:
            return
        marker = os.environ.get(PAUSE_FILE_ENV)
        if marker:
            Path(marker).write_text(f"{point} {os.getpid()}\n")
        seen = self.count
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while self.count == seen and time.monotonic() < deadline:
            time.sleep(0.05)
