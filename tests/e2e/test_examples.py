"""The examples that need a Docker engine (up, status, logs, down, image, bundle) run as printed.

tests/unit/test_examples.py runs the rest. Each line runs in-process in a fresh copy of a workspace
that holds: a spec from `deployctl init` (a free port, a name of its own), the model directories the
examples name, a key pair, two split bundles, a running simulated stack, and a fake NVML with two
RTX 4090s. A few examples cannot run on a test host without breaking its rules; NOT_RUN names them
and why, and they are only parsed. Lines that stop the stack run last.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import examples
from helpers.fake_nvml import two_4090s
from helpers.modelgen import write_model

from deployctl import stackdir
from deployctl.cli import cli

from .conftest import free_port

UNIT_TIER = {"init", "plan", "render", "health", "bench", "bench run", "bench compare", "gpus", "power"}
UNIT_TIER |= {"power show", "power set", "power reset", "doctor", "bundle keygen"}

TGI = "ghcr.io/huggingface/text-generation-inference:3.3.4"
NO_TGI = "the TGI image is not on a test host and no registry can be reached"

# Examples that would break the suite's rules if run: only parsed.
NOT_RUN = {
    "install into /srv/deployctl": "writes to /srv/deployctl on the host, outside the test's directories",
    "deployctl image build-base": "replaces the suite's cached Debian base (and runs mmdebstrap for minutes)",
    "deployctl k8s": "needs a Kubernetes cluster and helm: tests/e2e/test_k8s.py runs k8s up/status/down on the session's own cluster",
    "deployctl image build-exporter": "would leave deployctl/gpu-exporter:VERSION on the host: tests/e2e/test_monitoring.py builds it under a tag of its own and removes it",
}
# `power tune` on real GPUs: the workspace's stack is simulated, and tune refuses to cap GPUs for a simulator.
SIMULATED_STACK = "the workspace's stack runs the simulator: tune refuses to cap GPUs for it (exit 2)"


def _image_here(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def expected(run: examples.Run) -> tuple[int, str]:
    """Give the exit code a run must give on this host, and why."""
    text = run.text
    if TGI in text:
        return (0, "the image is here") if _image_here(TGI) else (2, NO_TGI)
    if text.startswith("deployctl image inspect deployctl/tgi-sim:"):
        name = run.args[2]
        return (0, "the image is here") if _image_here(name) else (2, f"{name} is not on this host")
    if "--base-image deployctl/debian-base:bookworm" in text:
        base = "deployctl/debian-base:bookworm"
        return (0, "the base is here") if _image_here(base) else (3, f"{base} is not here and cannot be pulled")
    if run.args[:1] == ["up"] and "--no-simulate" not in run.args:
        return 0, "the stack was started with --simulate (README's command 1): a bare `up` keeps that"
    if run.args[:1] == ["rollback"]:
        ran = stackdir.history(Path("deployctl-stack"))
        if len(set(ran)) < 2:
            return 5, "nothing ran before the running revision: nothing to go back to"
        return 0, "an earlier line upgraded the stack: rollback goes back to what ran before"
    if run.args[:2] == ["power", "tune"] and "--simulate" not in run.args:
        return 2, SIMULATED_STACK
    if text.startswith("deployctl bundle create") and "--simulate" not in text:
        if "/srv/models/" in text:
            return 2, "no model under /srv/models on a test host"
        return 2, NO_TGI
    return 0, "the example implies success"


def not_run(run: examples.Run) -> str | None:
    if run.args[:2] == ["bundle", "install"] and "/srv/deployctl" in run.args:
        return NOT_RUN["install into /srv/deployctl"]
    if run.args[:2] == ["image", "build-base"]:
        return NOT_RUN["deployctl image build-base"]
    if run.args[:1] == ["k8s"]:
        return NOT_RUN["deployctl k8s"]
    if run.args[:2] == ["image", "build-exporter"]:
        return NOT_RUN["deployctl image build-exporter"]
    return None


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, sim_image: str) -> Iterator[Path]:
    ws = tmp_path_factory.mktemp("examples-e2e")
    write_model(ws / "models" / "my-model-gptq", "llama-3.1-8b-instruct-gptq", weights=False)
    os.symlink("models/my-model-gptq", ws / "m")
    cwd = Path.cwd()
    os.chdir(ws)
    runner = CliRunner()
    try:
        assert runner.invoke(cli, ["init", "--name", f"ex-{uuid.uuid4().hex[:8]}"]).exit_code == 0
        spec = yaml.safe_load((ws / "deployctl.yaml").read_text())
        spec["serve"]["port"] = free_port()
        (ws / "deployctl.yaml").write_text(yaml.safe_dump(spec))
        assert runner.invoke(cli, ["bundle", "keygen", "site-key"]).exit_code == 0
        for out in ("llm.tar", "llm.bundle"):
            made = runner.invoke(
                cli,
                [
                    "bundle",
                    "create",
                    "-o",
                    out,
                    "--split",
                    "64M",
                    "--simulate",
                    "--wheels",
                    "none",
                    "--sign",
                    "site-key",
                ],
            )
            assert made.exit_code == 0, made.output
        up = runner.invoke(cli, ["up", "--simulate"])
        assert up.exit_code == 0, up.output
        os.chdir(cwd)
        yield ws
    finally:
        os.chdir(ws)
        runner.invoke(cli, ["down"])
        os.chdir(cwd)


def _follow(run: examples.Run, ws: Path) -> list[str]:
    """`logs -F` follows until stopped: run it as a process, stop it with SIGTERM, expect 130 (interrupted)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployctl", *run.args],
        cwd=ws,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return [f"{run.text}: still running 30 s after SIGTERM"]
    problems = [] if code == 130 else [f"{run.text}: exit {code} after SIGTERM, expected 130 (interrupted)"]
    return problems + ([] if first else [f"{run.text}: printed no log line"])


# Commands that act on the running stack: a stack belongs to its directory (issue #13's ownership), so
# they run in the workspace itself, not in a copy (a copied stack dir may not act on the original's project).
ON_THE_STACK = {"up", "down", "status", "logs", "health", "rollback", "bench"}


def run_line(line: str, base: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], int, int]:
    plan = examples.runs(line)
    rehearsal = any(run.args[:2] == ["power", "tune"] and "--simulate" in run.args for run in plan)
    in_place = rehearsal or any(run.args and run.args[0] in ON_THE_STACK for run in plan)
    if rehearsal:  # `power tune --simulate` needs the simulator's power model, as its help says
        monkeypatch.chdir(base)
        assert CliRunner().invoke(cli, ["up", "--simulate", "--sim-fault", "power-model=rtx4090"]).exit_code == 0
    ws = base if in_place else tmp / "ws"
    if not in_place:
        shutil.copytree(base, ws, symlinks=True)
    if plan[0].args[:2] == ["bundle", "create"]:
        for f in ws.glob("llm.*"):
            f.unlink()  # the line makes its own bundle
    monkeypatch.chdir(ws)
    problems: list[str] = []
    ran = skipped = 0
    for run in plan:
        reason = not_run(run)
        if reason:
            skipped += 1
            try:
                cli.make_context("deployctl", list(run.args), resilient_parsing=False).close()
            except Exception as exc:  # the example must at least parse
                problems.append(f"{run.text}: does not parse: {exc}")
            continue
        ran += 1
        if run.args[0] == "logs" and ("-F" in run.args or "--follow" in run.args):
            problems += _follow(run, ws)
            continue
        want, why = expected(run)
        result = CliRunner().invoke(cli, run.args)
        if result.exit_code != want:
            problems.append(f"{run.text}: exit {result.exit_code}, expected {want} ({why}): {result.output[-400:]}")
        elif "Traceback" in result.output:
            problems.append(f"{run.text}: traceback")
        elif run.piped_to == "jq":
            try:
                json.loads(result.stdout)
            except ValueError:
                problems.append(f"{run.text}: stdout is not JSON: {result.stdout[:200]!r}")
    if not in_place:
        shutil.rmtree(ws)
    return problems, ran, skipped


def test_docker_examples_run_as_printed(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from deployctl.hardware import inventory

    monkeypatch.setattr(inventory, "NVML_LIB", two_4090s())
    everything = examples.help_examples() + examples.readme_examples()
    docker_lines = [
        e for e in everything if not all(examples.command_of(r) in UNIT_TIER for r in examples.runs(e.line))
    ]
    # A line printed in two places (README and a --help) runs once: the same commands give the same outcome.
    distinct: dict[str, examples.Example] = {}
    for e in docker_lines:
        distinct.setdefault(shlex.join(r.text for r in examples.runs(e.line)), e)
    mine = sorted(distinct.values(), key=lambda e: any(r.args[:1] == ["down"] for r in examples.runs(e.line)))
    problems: list[str] = []
    ran = skipped = 0
    for i, e in enumerate(mine):
        if any(r.args[:1] in (["status"], ["logs"], ["down"]) for r in examples.runs(e.line)):
            monkeypatch.chdir(workspace)  # a line before may have stopped the stack: these need it running
            assert CliRunner().invoke(cli, ["up", "--simulate"]).exit_code == 0
        p, r, s = run_line(e.line, workspace, tmp_path / str(i), monkeypatch)
        problems += [f"{e.source}: {x}" for x in p]
        ran, skipped = ran + r, skipped + s
    with capsys.disabled():
        print(
            f"\nexamples (Docker): ran {ran} commands from {len(mine)} distinct lines ({len(docker_lines)} printed); "
            f"parsed only {skipped} ({NOT_RUN})"
        )
    assert not problems, "\n".join(problems)
    assert ran >= 20
