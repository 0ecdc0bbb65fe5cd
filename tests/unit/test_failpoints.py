"""Failpoints: inert unless named, a pause that meets the test on files or a signal, an injected error."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from helpers.failpoints import Pauses

from deployctl import failpoints
from deployctl.errors import DeployctlError


@pytest.fixture(autouse=True)
def _fresh_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_used", {})


def test_nothing_happens_unless_the_point_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.ENV, raising=False)
    failpoints.hit("image-build")
    monkeypatch.setenv(failpoints.ENV, "other=error(boom);image-build=off")
    failpoints.hit("image-build")


def test_an_error_is_raised_at_its_point_as_often_as_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "disk=2*error(no space left on device)")
    for _ in range(2):
        with pytest.raises(failpoints.FailpointError, match="no space left on device") as info:
            failpoints.hit("disk")
        assert info.value.exit_code == 1
    failpoints.hit("disk")  # the third time passes


@pytest.mark.parametrize("text", ["image-build", "=pause(/x)", "a=pause", "a=sleep(3)", "a=pause(/x"])
def test_a_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(failpoints.ENV, text)
    with pytest.raises(DeployctlError, match=failpoints.ENV):
        failpoints.hit("a")


def test_a_pause_waits_for_its_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pauses = Pauses(tmp_path, "p")
    monkeypatch.setenv(failpoints.ENV, pauses.env[failpoints.ENV])
    order: list[str] = []

    def release_once_paused() -> None:
        pauses.wait("p")
        order.append("reached")
        pauses.release("p")

    helper = threading.Thread(target=release_once_paused)
    helper.start()
    failpoints.hit("p")
    order.append("went on")
    helper.join()
    assert order == ["reached", "went on"]
    assert failpoints.reached(tmp_path, "p").read_text() == f"{os.getpid()}\n"


def test_a_pause_ends_at_a_signal_whose_handler_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pauses = Pauses(tmp_path, "p")
    monkeypatch.setenv(failpoints.ENV, pauses.env[failpoints.ENV])
    sender = threading.Thread(target=lambda: (pauses.wait("p"), os.kill(os.getpid(), signal.SIGINT)))
    sender.start()
    with pytest.raises(KeyboardInterrupt):
        failpoints.hit("p")
    sender.join()
