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
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import examples, simserver
from helpers.fake_nvml import two_4090s
from helpers.modelgen import write_model

from deployctl.cli import cli

# Commands whose examples run here; the rest need a Docker engine (tests/e2e/test_examples.py).
HERE = {"init", "plan", "render", "health", "bench", "bench run", "bench compare", "gpus", "power"}
HERE |= {"power show", "power set", "power reset", "doctor", "bundle keygen"}

# Examples that cannot succeed on a test host, with the exit code they must give and why.
EXPECTED: dict[str, tuple[int, str]] = {
    "deployctl doctor": (1, "the unit suite has no Docker engine: the Docker checks FAIL"),
    "deployctl doctor --json": (1, "the unit suite has no Docker engine: the Docker checks FAIL"),
}

FAST_SIM = {  # the examples exercise the CLI, not the latency model: answer quickly
    "SIM_LOAD_SECONDS": "0",
    "SIM_TTFT_BASE_MS": "1",
    "SIM_PREFILL_TOKENS_PER_S": "10000000",
    "SIM_ITL_MS": "0.5",
    "SIM_ITL_PER_STREAM_MS": "0",
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, m70: Path) -> Iterator[Path]:
    """The workspace every example starts from, with a simulator answering for its stack."""
    ws = tmp_path_factory.mktemp("examples-base")
    write_model(ws / "models" / "my-model-gptq", "llama-3.1-8b-instruct-gptq", weights=False)
    (ws / "Llama-3-70B-GPTQ").symlink_to(m70)  # sparse weights: linked, never copied
    os.symlink("models/my-model-gptq", ws / "m")
    port = _free_port()
    cwd = Path.cwd()
    os.chdir(ws)
    try:
        runner = CliRunner()
        assert runner.invoke(cli, ["init", "--name", "examples"]).exit_code == 0
        spec = yaml.safe_load((ws / "deployctl.yaml").read_text())
        spec["serve"]["port"] = port  # the one edit: a free port instead of 8080
        (ws / "deployctl.yaml").write_text(yaml.safe_dump(spec))
        done = runner.invoke(cli, ["render", "--simulate", "--gpu-model", "rtx4090"])
        assert done.exit_code == 0, done.output
        engine = yaml.safe_load((ws / "deployctl-stack" / "compose.yaml").read_text())["services"]["engine"]
        args = [a for a in engine["command"] if a not in ("--hostname", "0.0.0.0")]
        env = {**engine["environment"], **FAST_SIM}
        with simserver.process(env, *args, port=port):
            for name in ("1gpu", "2gpu"):
                done = runner.invoke(
                    cli, ["bench", "--concurrency", "1,2", "--requests", "4", "--warmup", "0", "-o", f"results/{name}"]
                )
                assert done.exit_code == 0, done.output
            os.chdir(cwd)
            yield ws
    finally:
        os.chdir(cwd)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two RTX 4090s (root), power state and systemd units under tmp_path, no Docker engine."""
    from deployctl import docker_engine
    from deployctl.errors import EnvironmentProblem
    from deployctl.hardware import inventory, persist

    monkeypatch.setattr(inventory, "NVML_LIB", two_4090s())
    monkeypatch.setenv("DEPLOYCTL_STATE_DIR", str(tmp_path / "state"))
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\nexit 0\n")
    systemctl.chmod(0o755)
    monkeypatch.setenv("DEPLOYCTL_SYSTEMCTL", str(systemctl))
    monkeypatch.setattr(persist, "UNIT_DIR", tmp_path / "units")

    def no_engine() -> None:
        raise EnvironmentProblem("the Docker engine is not reachable (unit tests)")

    monkeypatch.setattr(docker_engine, "client", no_engine)


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
