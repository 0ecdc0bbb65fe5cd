"""SIGINT and SIGTERM during a workflow: the first stops it, one during clean-up is noted, a second stops that."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from helpers.failpoints import Pauses

from deployctl import failpoints
from deployctl.interrupt import Guard, Signalled, held


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)  # Python runs the handler before the next line


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_workflow_and_the_handlers_come_back(signum: int) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(Signalled) as caught, Guard().installed():
        _signal_self(signum)
    assert caught.value.signum == signum and isinstance(caught.value, KeyboardInterrupt)
    assert signal.getsignal(signum) == before


def test_during_clean_up_the_first_signal_is_noted_and_the_second_stops_it() -> None:
    notes: list[str] = []
    guard = Guard(notice=notes.append)
    with guard.installed():
        with guard.cleaning_up():
            _signal_self(signal.SIGTERM)  # noted: the clean-up goes on
            assert guard.count == 1 and "finishing the clean-up" in notes[0]
            with pytest.raises(Signalled):
                _signal_self(signal.SIGINT)
        assert guard.count == 2


def test_a_pause_at_a_failpoint_ends_at_a_signal_that_clean_up_only_notes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pauses = Pauses(tmp_path, "rollback")
    monkeypatch.setenv(failpoints.ENV, pauses.env[failpoints.ENV])
    guard = Guard()
    guard.checkpoint("before-start")  # not this point: returns at once
    assert not failpoints.reached(tmp_path, "before-start").exists()

    def signal_once_paused() -> None:
        pauses.wait("rollback")
        os.kill(os.getpid(), signal.SIGTERM)  # as a test would send to `up`

    sender = threading.Thread(target=signal_once_paused)
    with guard.installed(), guard.cleaning_up():
        sender.start()
        guard.checkpoint("rollback")  # waits until the signal, which clean-up only notes
    sender.join()
    assert failpoints.reached(tmp_path, "rollback").read_text() == f"{os.getpid()}\n" and guard.count == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_held_signal_waits_until_the_steps_are_done_then_stops_the_workflow(signum: int) -> None:
    steps: list[str] = []
    before = signal.getsignal(signum)
    with pytest.raises(Signalled) as caught, Guard().installed():
        with held():
            steps.append("first rename")
            _signal_self(signum)  # held: the next step still runs
            steps.append("second rename")
        steps.append("after the block")  # never reached: the signal is delivered as the block ends
    assert steps == ["first rename", "second rename"] and caught.value.signum == signum
    assert signal.getsignal(signum) == before


def test_held_without_a_signal_changes_nothing() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with held():
        pass
    assert {s: signal.getsignal(s) for s in before} == before
