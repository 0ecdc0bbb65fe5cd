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
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
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


# Lines that drive load against the simulator: they wait on the network more than they compute, so they
# run as processes side by side (in copies of the workspace of their own) while the others run here.
BENCHING = {"bench", "bench run"}


def _check(run: examples.Run, code: int, stdout: str, output: str, failure: str | None) -> list[str]:
    """Give what is wrong with one run's outcome: its exit code, a traceback, stdout that should be JSON."""
    want, why = EXPECTED.get(run.text, (0, "the example implies success"))
    if code != want:
        return [f"{run.text}: exit {code}, expected {want} ({why}): {output[-400:]}"]
    problems = []
    if "Traceback" in output or failure:
        problems.append(f"{run.text}: {failure or 'traceback'}")
    if run.piped_to == "jq" or run.redirect:
        lines = stdout.splitlines() if run.redirect else [stdout]
        try:
            [json.loads(x) for x in lines]
        except ValueError:
            problems.append(f"{run.text}: stdout is not JSON for {run.piped_to or run.redirect}: {stdout!r}")
    return problems


def _workspace(line: str, base: Path, workdir: Path) -> Path:
    ws = workdir / "ws"
    shutil.copytree(base, ws, symlinks=True)
    if examples.runs(line)[0].args[:1] == ["init"]:
        (ws / "deployctl.yaml").unlink()  # `init` starts where there is no spec yet
    return ws


def run_line(line: str, base: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run an example line's deployctl commands in-process in a fresh copy of the workspace; give what failed."""
    ws = _workspace(line, base, workdir)
    monkeypatch.chdir(ws)
    problems = []
    for run in examples.runs(line):
        result = CliRunner().invoke(cli, run.args)
        failure = repr(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else None
        found = _check(run, result.exit_code, result.stdout, result.output, failure)
        problems += found
        if run.redirect and not found:
            (ws / run.redirect).write_text(result.stdout)
    shutil.rmtree(ws)
    return problems


def run_line_as_processes(line: str, base: Path, workdir: Path) -> list[str]:
    """Run an example line's deployctl commands as processes in a fresh copy of the workspace; give what failed."""
    ws = _workspace(line, base, workdir)
    problems = []
    for run in examples.runs(line):
        done = subprocess.run(
            [sys.executable, "-m", "deployctl", *run.args], cwd=ws, capture_output=True, text=True, timeout=300
        )
        found = _check(run, done.returncode, done.stdout, done.stdout + done.stderr, None)
        problems += found
        if run.redirect and not found:
            (ws / run.redirect).write_text(done.stdout)
    shutil.rmtree(ws)
    return problems


def test_examples_run_as_printed(
    base: Path, host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    here = [e for e in all_examples() if needs_here(e)]
    # A line printed in two places (README and a --help) runs once: the same commands give the same outcome.
    sources: dict[str, list[str]] = {}
    for e in here:
        sources.setdefault(shlex.join(r.text for r in examples.runs(e.line)), []).append(f"{e.source}: {e.line}")
    lines = {
        key: next(e.line for e in here if shlex.join(r.text for r in examples.runs(e.line)) == key) for key in sources
    }
    benching = [k for k, line in lines.items() if any(examples.command_of(r) in BENCHING for r in examples.runs(line))]
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=len(benching) or 1) as pool:
        started = {
            k: pool.submit(run_line_as_processes, lines[k], base, tmp_path / f"p{i}") for i, k in enumerate(benching)
        }
        for i, (key, line) in enumerate(lines.items()):
            if key not in started:
                problems += [f"{sources[key][0]}: {p}" for p in run_line(line, base, tmp_path / f"l{i}", monkeypatch)]
        for key, future in started.items():
            problems += [f"{sources[key][0]}: {p}" for p in future.result()]
    ran = sum(len(examples.runs(line)) for line in lines.values())
    with capsys.disabled():
        print(
            f"\nexamples: ran {ran} commands from {len(lines)} distinct example lines here ({len(here)} lines, "
            f"{len(all_examples())} in all; {len(benching)} load-driving lines as processes side by side)"
        )
    assert not problems, "\n".join(problems)
    assert len(here) >= 15
