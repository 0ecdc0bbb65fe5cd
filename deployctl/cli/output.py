"""The one place that writes what the CLI says: JSON documents, errors, tables and progress.

The contract (README, "Commands"; `deployctl --help`):
- with `--json`, stdout carries exactly one JSON document, on success and on failure alike; a
  failure's document has `error`, `hint` and `exit_code`; numbers are JSON numbers;
- `error: ...` lines and progress go to stderr, never to stdout;
- without a terminal nothing writes escape codes, and a step that runs longer than a couple of
  seconds says so on stderr at least every PLAIN_EVERY_S seconds, one plain line at a time.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import click

from deployctl.terminal import shown

if TYPE_CHECKING:
    import deployctl.progress

# How often a plain (non-terminal) progress line may repeat for the same item: often enough that a
# log shows a long step is alive, rarely enough that a 10-minute copy stays a short log.
PLAIN_EVERY_S = 2.0
# Off a terminal, progress starts once work has run this long: a command that finishes (or fails) sooner
# prints only its result or its one error line.
PLAIN_AFTER_S = 2.0


def is_terminal(stream: IO[str] | None) -> bool:
    """Give whether `stream` is an interactive terminal (False for pipes, files and test runners)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def echo_json(data: Any, *, line: bool = False) -> None:
    """Write one JSON document to stdout: indented, or on one line (JSON Lines) with `line`.

    A result dataclass is written field by field (nested ones too), paths as text: what the text report shows.
    """
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = dataclasses.asdict(data)
    text = json.dumps(data, sort_keys=True, default=str, indent=None if line else 2)
    click.echo(text)


def error_document(message: str, hint: str | None, exit_code: int) -> dict[str, Any]:
    """Give the JSON document a failed command prints under `--json`."""
    return {"error": message, "hint": hint, "exit_code": exit_code}


def error_line(message: str, hint: str | None) -> str:
    """Give the one line a failed command prints on stderr (what came from outside escaped, see `shown`)."""
    return "error: " + shown(f"{message}; {hint}" if hint else message, limit=None)


def cell(value: object) -> str:
    """Give a value for a table cell: escaped for the terminal, and never read as rich markup ([red])."""
    from rich.markup import escape

    return escape(shown(value, limit=None))


def console(*, stderr: bool = False) -> Any:
    """Give a rich Console for tables: colours on a terminal, plain text (no escape codes) otherwise."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if is_terminal(stream):
        return Console(file=stream, highlight=False)
    # Not a terminal: no colour, no cursor movement, whatever FORCE_COLOR or TERM say; wide enough
    # that a table piped to a file or grep is not cut to 80 columns.
    return Console(file=stream, highlight=False, color_system=None, force_terminal=False, width=160)


def table(title: str, columns: list[str], rows: Sequence[Sequence[object]], *, right: tuple[str, ...] = ()) -> None:
    """Print a table on stdout."""
    from rich.table import Table

    t = Table(title=cell(title))
    for c in columns:
        t.add_column(cell(c), justify="right" if c in right else "left")
    for r in rows:
        t.add_row(*(cell(v) for v in r))
    console().print(t)


def rows(
    records: Sequence[Mapping[str, Any]],
    columns: Mapping[str, str],
    *,
    as_json: bool,
    title: str = "",
    text: Callable[[Mapping[str, Any]], Sequence[object]] | None = None,
    right: tuple[str, ...] = (),
    key: str | None = None,
) -> None:
    """Print the same records as one JSON document (a list of objects, or `{key: list}`) or as a table of
    `columns` (key -> heading).

    A table row is `text(record)` (each column's value shown as text), else the record's values for `columns`:
    the table is made from the rows the JSON carries, so the two cannot disagree (sqlite-utils' output_rows).
    """
    if as_json:
        data = [dict(r) for r in records]
        echo_json({key: data} if key else data)
        return
    shown_row = text or (lambda r: [r[k] for k in columns])
    table(title, list(columns.values()), [shown_row(r) for r in records], right=right)


def lines(*, enabled: bool = True, indent: str = "") -> deployctl.progress.Progress:
    """Give a progress report (deployctl.progress.Progress) that prints every report as its own line on
    stderr: a tool's output (image builds), or the one step a command then waits on."""

    from deployctl.progress import each_line, quiet

    return each_line(lambda text: click.echo(f"{indent}{text}", err=True)) if enabled else quiet


def _amount(done: float, total: float | None, unit: str) -> str:
    if unit == "bytes":
        text = f"{done / 1e6:,.1f} MB"
        return f"{text} of {total / 1e6:,.1f} MB" if total else text
    return f"{done:g}/{total:g}" if total else f"{done:g}"


class Progress:
    """Progress on stderr: a live display on a terminal; plain, rate-limited lines otherwise.

    `step(text)` starts a phase (printed at once), `update(item, done, total)` advances an item
    (a plain line at most every PLAIN_EVERY_S per item), `say(text)` prints a line, and
    `heartbeat(text)` keeps saying that a step without its own progress is still running.
    """

    def __init__(
        self, *, enabled: bool = True, unit: str = "", every_s: float = PLAIN_EVERY_S, after_s: float = PLAIN_AFTER_S
    ) -> None:
        self.enabled = enabled
        self.after_s = after_s
        self.unit = unit
        self.every_s = every_s
        self.stream = sys.stderr
        self.live = enabled and is_terminal(self.stream)
        self._rich: Any = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, float] = {}
        self._phase: str | None = None
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._pending: str | None = None  # the latest progress line held back during the first PLAIN_AFTER_S

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[amount]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream, highlight=False),
                transient=True,
            )
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
            self._rich = None

    def _plain(self, text: str) -> None:
        with self._lock:
            click.echo(text, err=True)

    def _progress_line(self, text: str) -> None:
        """A progress line off a terminal: held back (only the latest) until the work has run PLAIN_AFTER_S."""
        if time.monotonic() - self._started < self.after_s:
            self._pending = text
            return
        if self._pending is not None:
            pending, self._pending = self._pending, None
            if pending != text:
                self._plain(pending)
        self._plain(text)

    def say(self, text: str) -> None:
        """Print one line on stderr (above the live display on a terminal)."""
        if not self.enabled:
            return
        text = shown(text, limit=None)
        if self._rich is not None:
            self._rich.console.print(text, highlight=False, markup=False)
        else:
            self._plain(text)

    def step(self, text: str, detail: str = "") -> None:
        """Show the current phase: at once when it changes, and again every few seconds with `detail`."""
        if not self.enabled:
            return
        if self._rich is not None:
            line = f"{text} {detail}".strip()
            if "_phase" not in self._tasks:
                self._tasks["_phase"] = self._rich.add_task(line, total=None, amount="")
            self._rich.update(self._tasks["_phase"], description=line)
            return
        now = time.monotonic()
        if text != self._phase or now - self._last.get("_phase", 0.0) >= self.every_s:
            self._phase = text
            self._last["_phase"] = now
            self._progress_line(f"{text} {detail}".rstrip())

    def update(self, item: str, done: float, total: float | None = None) -> None:
        """Advance `item` to `done` of `total` (in this Progress's unit)."""
        if not self.enabled:
            return
        amount = _amount(done, total, self.unit)
        if self._rich is not None:
            if item not in self._tasks:
                self._tasks[item] = self._rich.add_task(cell(item[-48:]), total=total, amount=amount)
            self._rich.update(self._tasks[item], completed=done, total=total, amount=amount)
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        first = item not in self._last
        if first or finished or now - self._last[item] >= self.every_s:
            if finished and self._last.get(item) == -1.0:
                return  # its last line was printed already
            self._last[item] = -1.0 if finished else now
            self._progress_line(f"{shown(item, limit=None)}: {amount}")

    def __call__(
        self, what: str, done: float | None = None, total: float | None = None, /, *, detail: str | None = None
    ) -> None:
        """Show a report of a core function (deployctl.progress.Progress): a phase, or an item's amount."""
        if done is None:
            self.step(what, detail or "")
        else:
            self.update(what, done, total)

    def heartbeat(self, text: str) -> _Heartbeat:
        """Give a context that prints `text (N s)` every few seconds until it ends (plain mode only)."""
        return _Heartbeat(self, text)


class _Heartbeat:
    def __init__(self, progress: Progress, text: str) -> None:
        self.progress = progress
        self.text = text
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        self.started = time.monotonic()
        self.progress.step(self.text)
        if self.progress.enabled and not self.progress.live:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.progress.every_s):
            self.progress._plain(f"{self.text} ({time.monotonic() - self.started:.0f} s)")

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(5)
