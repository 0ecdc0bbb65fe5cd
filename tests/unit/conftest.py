"""Fixtures for CLI tests that run commands as a user would: a workspace with a simulated stack, a fake host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import simserver
from helpers.fake_nvml import two_4090s
from helpers.modelgen import write_model

from deployctl.cli import cli

FAST_SIM = {  # the examples exercise the CLI, not the latency model: answer quickly
    "SIM_LOAD_SECONDS": "0",
    "SIM_TTFT_BASE_MS": "1",
    "SIM_PREFILL_TOKENS_PER_S": "10000000",
    "SIM_ITL_MS": "0.5",
    "SIM_ITL_PER_STREAM_MS": "0",
}


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
    from deployctl.docker import engine as docker_engine
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

    monkeypatch.setattr(docker_engine, "_client", no_engine)
    monkeypatch.setenv("DEPLOYCTL_DOCKER", str(tmp_path / "no-docker-cli"))  # `docker compose` is not run either
