"""Collect every example line from `--help` and README's command block; split them into deployctl runs."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

README = Path(__file__).parents[2] / "README.md"
EXAMPLES_HEADING = re.compile(r"^\s*Examples?:\s*$")


@dataclass(frozen=True)
class Example:
    source: str  # "deployctl bundle create --help" or "README.md"
    line: str


@dataclass(frozen=True)
class Run:
    """One `deployctl ...` segment of an example line."""

    text: str  # the segment as printed (for messages and the expectation table)
    args: list[str]  # after `deployctl`
    piped_to: str | None  # the program the output goes to (jq), if any
    redirect: str | None  # the file stdout is appended or written to, if any


def _example_lines(help_text: str) -> list[str]:
    out, inside = [], False
    for line in help_text.splitlines():
        if EXAMPLES_HEADING.match(line):
            inside = True
            continue
        if inside and not line.strip():
            inside = False
        if inside and "deployctl" in line:
            out.append(line.strip())
    return out


def help_examples() -> list[Example]:
    """Give the example lines of every command's and subcommand's --help, top level included."""
    from deployctl.cli import cli

    found: list[Example] = []

    def walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        found.extend(Example(" ".join([*path, "--help"]), line) for line in _example_lines(cmd.get_help(ctx)))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, [*path, name], ctx)

    walk(cli, ["deployctl"], None)
    return found


def command_paths() -> list[str]:
    """Give every command and subcommand as `deployctl a b`."""
    from deployctl.cli import cli

    paths: list[str] = []

    def walk(cmd: click.Command, path: list[str], parent: click.Context | None) -> None:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name], ctx)
        if len(path) > 1:
            paths.append(" ".join(path))

    walk(cli, ["deployctl"], None)
    return paths


def readme_examples() -> list[Example]:
    """Give the lines of README's "## Commands" shell block."""
    text = README.read_text()
    block = text.split("## Commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [Example("README.md", line.strip()) for line in block.splitlines() if line.strip()]


def runs(line: str) -> list[Run]:
    """Split an example line at ; && || into its deployctl segments (sudo dropped; other programs left out)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    tokens = list(lex)  # comments (# ...) are dropped by shlex
    segments: list[list[str]] = [[]]
    for tok in tokens:
        if tok in (";", "&&", "||"):
            segments.append([])
        else:
            segments[-1].append(tok)
    out = []
    for seg in segments:
        if not seg:
            continue
        piped_to = redirect = None
        if "|" in seg:
            i = seg.index("|")
            seg, piped_to = seg[:i], seg[i + 1]
        for op in (">>", ">"):
            if op in seg:
                i = seg.index(op)
                seg, redirect = seg[:i], seg[i + 1]
        if seg and seg[0] == "sudo":
            seg = seg[1:]
        if not seg or seg[0] != "deployctl":
            continue  # $EDITOR, jq, ...: not ours to run
        out.append(Run(shlex.join(seg), seg[1:], piped_to, redirect))
    return out


def command_of(run: Run) -> str:
    """Give the command path a run calls: `bundle create`, `bench` (its default `run`), `plan`."""
    from deployctl.cli import cli

    words = [a for a in run.args if not a.startswith("-")][:2]
    if not words:
        return ""
    ctx = click.Context(cli, info_name="deployctl")
    cmd = cli.get_command(ctx, words[0])
    if isinstance(cmd, click.Group) and len(words) > 1 and words[1] in cmd.list_commands(ctx):
        return " ".join(words)
    return words[0]
