"""Every example in `--help` and in README's command block runs as printed.

Examples of commands that need no Docker engine run here, in-process, in a fresh copy of a
workspace: a spec as `deployctl init` writes it (its port set to a free one), the model directories
the examples name, a simulated stack whose simulator runs in a process of its own, two bench results,
and a fake NVML with two RTX 4090s (root). Examples that need the engine (up, status, logs, down,
image, bundle create/verify/install) run in tests/e2e/test_examples.py. A line runs where all of
its deployctl commands can.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import examples

from deployctl.cli import cli

# Commands whose examples run here; the rest need a Docker engine (tests/e2e/test_examples.py).
HERE = {"init", "plan", "render", "health", "bench", "bench run", "bench compare", "gpus", "power"}
HERE |= {"power show", "power set", "power reset", "doctor", "bundle keygen", "monitor", "exporter"}

# Examples that cannot succeed on a test host, with the exit code they must give and why.
EXPECTED: dict[str, tuple[int, str]] = {
    "deployctl doctor": (1, "the unit suite has no Docker engine: the Docker checks FAIL"),
    "deployctl doctor --json": (1, "the unit suite has no Docker engine: the Docker checks FAIL"),
}


def all_examples() -> list[examples.Example]:
    return examples.help_examples() + examples.readme_examples()


def needs_here(example: examples.Example) -> bool:
    return all(examples.command_of(r) in HERE for r in examples.runs(example.line))


def test_every_command_and_subcommand_has_an_example() -> None:
    sources = {e.source for e in examples.help_examples()}
    missing = [p for p in examples.command_paths() if f"{p} --help" not in sources]
    assert not missing, f"commands without an example in their own --help: {missing}"
    for e in all_examples():
        assert examples.runs(e.line), f"{e.source}: {e.line!r} runs no deployctl command"


def run_line(line: str, base: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run an example line's deployctl commands in a fresh copy of the workspace; give what failed."""
    ws = workdir / "ws"
    shutil.copytree(base, ws, symlinks=True)
    plan = examples.runs(line)
    if plan and plan[0].args[:1] == ["init"]:
        (ws / "deployctl.yaml").unlink()  # `init` starts where there is no spec yet
    monkeypatch.chdir(ws)
    problems = []
    for run in plan:
        result = CliRunner().invoke(cli, run.args)
        want, why = EXPECTED.get(run.text, (0, "the example implies success"))
        if result.exit_code != want:
            problems.append(f"{run.text}: exit {result.exit_code}, expected {want} ({why}): {result.output[-400:]}")
            continue
        if "Traceback" in result.output or (result.exception and not isinstance(result.exception, SystemExit)):
            problems.append(f"{run.text}: {result.exception!r}")
        if run.piped_to == "jq" or run.redirect:
            lines = result.stdout.splitlines() if run.redirect else [result.stdout]
            try:
                [json.loads(x) for x in lines]
            except ValueError:
                problems.append(f"{run.text}: stdout is not JSON for {run.piped_to or run.redirect}: {result.stdout!r}")
        if run.redirect:
            (ws / run.redirect).write_text(result.stdout)
    shutil.rmtree(ws)
    return problems


def test_examples_run_as_printed(
    base: Path, host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = [e for e in all_examples() if needs_here(e)]
    problems = []
    for e in here:
        problems += [f"{e.source}: {p}" for p in run_line(e.line, base, tmp_path, monkeypatch)]
    ran = sum(len(examples.runs(e.line)) for e in here)
    with capsys.disabled():
        print(
            f"\nexamples: ran {ran} commands from {len(here)} example lines here ({len(all_examples())} lines in all)"
        )
    assert not problems, "\n".join(problems)
    assert len(here) >= 15
