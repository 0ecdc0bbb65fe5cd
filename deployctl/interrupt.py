"""Ctrl-C and SIGTERM, one way for every command: the one signal guard.

Python turns SIGINT into KeyboardInterrupt and lets SIGTERM kill the process outright. `Guard` makes
both raise `Signalled` (a KeyboardInterrupt, so every `finally` runs): `up` and `rollback` clean up
once and stop at a second signal, `power tune` puts the caps back, `logs -F` stops its child. `held`
holds both off while a few steps must finish together (renames, caps going back) and delivers them
when the block ends.
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
from typing import Any

from deployctl.errors import DeployctlError

# TEST-ONLY: make a workflow stop at a named point until a signal arrives, so that the e2e tests can
# interrupt `up` exactly there. DEPLOYCTL_TEST_PAUSE_AT names the point; when it is reached, the file
# DEPLOYCTL_TEST_PAUSE_FILE is created (the test waits for it). Never set these in production.
PAUSE_AT_ENV = "DEPLOYCTL_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "DEPLOYCTL_TEST_PAUSE_FILE"
PAUSE_LIMIT_S = 120  # a forgotten test pause ends on its own


SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
        saved = _route(self._handle)
        try:
            yield self
        finally:
            _restore(saved)

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


Handler = Callable[[int, FrameType | None], Any] | int | None


def _route(handler: Callable[[int, FrameType | None], Any]) -> dict[signal.Signals, Handler]:
    """Send SIGINT and SIGTERM to `handler`; give the handlers they had."""
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    return saved


def _restore(saved: dict[signal.Signals, Handler]) -> None:
    for s, handler in saved.items():
        signal.signal(s, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off while the block runs, so that its steps finish together; a signal that
    arrived meanwhile is delivered (to whatever handled it before) when the block ends.

    A Python handler rather than a signal mask: a signal sent to the process may land on any thread,
    and only a handler sees it whichever thread that is (the main thread runs it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    saved = _route(lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        _restore(saved)
        if arrived:
            signal.raise_signal(arrived[0])
