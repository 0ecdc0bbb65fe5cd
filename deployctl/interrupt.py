"""Ctrl-C and SIGTERM, one way for every command: the one signal guard.

Python turns SIGINT into KeyboardInterrupt and lets SIGTERM kill the process outright. `Guard` makes
both raise `Signalled` (a KeyboardInterrupt, so every `finally` runs): `up` and `rollback` clean up
once and stop at a second signal, `power tune` puts the caps back, `logs -F` stops its child. `held`
holds both off while a few steps must finish together (renames, caps going back) and delivers them
when the block ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from deployctl import failpoints
from deployctl.errors import DeployctlError

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
        """Pass the failpoint `point`; a pause there also ends at a signal this guard only notes."""
        seen = self.count
        failpoints.hit(point, wake=lambda: self.count != seen)


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
