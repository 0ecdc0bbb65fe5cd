"""SIGINT and SIGTERM during a workflow: the first stops it, one during clean-up is noted, a second stops that."""

from __future__ import annotations

import os
import signal

import pytest

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


def test_the_test_pause_waits_only_at_its_point(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "paused"
    monkeypatch.setenv("DEPLOYCTL_TEST_PAUSE_AT", "rollback")
    monkeypatch.setenv("DEPLOYCTL_TEST_PAUSE_FILE", str(marker))
    guard = Guard()
    guard.checkpoint("before-start")  # not this point: returns at once
    assert not marker.exists()
    with guard.installed(), guard.cleaning_up():
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # SIGALRM -> a SIGTERM to ourselves, as a test would send
        signal.signal(signal.SIGALRM, lambda s, f: os.kill(os.getpid(), signal.SIGTERM))
        try:
            guard.checkpoint("rollback")  # waits until the signal, which clean-up only notes
        finally:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
    assert marker.read_text().startswith("rollback ") and guard.count == 1


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
