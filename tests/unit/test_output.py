"""Output off a terminal: plain progress lines on stderr, no escape codes, even when colour is forced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployctl.cli import cli, output


def test_progress_off_a_terminal_is_plain_rate_limited_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with output.Progress(unit="bytes", every_s=3600, after_s=0) as p:
        assert not p.live
        p.step("planning")
        p.step("planning", "0.5s")  # the same phase again within the interval: quiet
        p.step("starting containers")
        for done in range(0, 101, 10):
            p.update("image x", done * 1_000_000, 100_000_000)  # first and last line only
        p.say("a line")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "planning",
        "starting containers",
        "image x: 0.0 MB of 100.0 MB",
        "image x: 100.0 MB of 100.0 MB",
        "a line",
    ]


def test_the_display_shows_every_kind_of_report_core_functions_give(capsys: pytest.CaptureFixture[str]) -> None:
    """One Progress type (deployctl/progress.py): a phase, a phase with the engine's last log line, an item's bytes."""
    from deployctl.progress import Progress, each_line

    def work(report: Progress) -> None:
        report("waiting for /health")
        report("loading model", detail="Loading shard 1/2")
        report("model weights.safetensors", 50_000_000, 50_000_000)

    with output.Progress(unit="bytes", every_s=3600, after_s=0) as p:
        work(p)
    seen: list[str] = []
    work(each_line(seen.append))
    assert capsys.readouterr().err.splitlines() == [
        "waiting for /health",
        "loading model Loading shard 1/2",
        "model weights.safetensors: 50.0 MB of 50.0 MB",
    ]
    assert seen == ["waiting for /health", "loading model", "model weights.safetensors"]


def test_work_that_ends_within_the_quiet_time_prints_no_progress(capsys: pytest.CaptureFixture[str]) -> None:
    with output.Progress(unit="bytes", after_s=3600) as p:
        p.step("planning")
        p.update("image x", 5_000_000, 100_000_000)
        p.say("error context is always said")
    assert capsys.readouterr().err.splitlines() == ["error context is always said"]


def test_heartbeat_says_a_long_step_is_alive(capsys: pytest.CaptureFixture[str]) -> None:
    err: list[str] = []
    beats = 0
    deadline = time.monotonic() + 60  # a bound for a heartbeat that never beats, not a timing
    with output.Progress(every_s=0.01, after_s=0) as p, p.heartbeat("downloading wheels"):
        while beats < 2 and time.monotonic() < deadline:  # wait for two beats, however long they take
            err += capsys.readouterr().err.splitlines()
            beats = sum(line.startswith("downloading wheels (") for line in err)
            time.sleep(0.01)
    err += capsys.readouterr().err.splitlines()
    assert err[0] == "downloading wheels" and beats >= 2 and err[1].startswith("downloading wheels (")


def test_no_escape_codes_when_not_a_terminal_even_with_force_color(
    base: Path, host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(base)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    for args in (["plan", "--gpu-model", "rtx4090"], ["gpus"], ["power", "show"], ["doctor"], ["health"]):
        result = CliRunner().invoke(cli, args)
        assert "\x1b[" not in result.stdout and "\x1b[" not in result.stderr, args
        assert result.stdout.strip(), args


def test_rows_prints_the_same_records_as_a_table_or_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    records = [{"gpu": 0, "name": "[red]RTX\x1b[2J", "watts": 300.5}, {"gpu": 1, "name": "L4", "watts": None}]
    columns = {"gpu": "#", "name": "name", "watts": "limit"}
    output.rows(records, columns, as_json=True, title="power")
    assert json.loads(capsys.readouterr().out) == records  # numbers stay numbers, None stays null
    output.rows(records, columns, as_json=False, title="power", text=lambda r: [r["gpu"], r["name"], r["watts"] or "-"])
    table = capsys.readouterr().out
    assert "limit" in table and "300.5" in table and "-" in table and "L4" in table
    assert "[red]RTX" in table and "\x1b" not in table  # a value from outside is text, never markup or escapes


def test_a_result_dataclass_is_written_field_by_field(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Part:
        name: str
        bytes: int

    @dataclass(frozen=True)
    class Made:
        path: Path
        parts: list[Part]

    output.echo_json(Made(Path("out/llm.tar"), [Part("llm.tar.000", 7)]))
    assert json.loads(capsys.readouterr().out) == {
        "path": "out/llm.tar",
        "parts": [{"name": "llm.tar.000", "bytes": 7}],
    }
