"""Every rendered stack passes `docker compose config -q` on the real Compose v2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from unit.test_render import files_for

from deployctl.stackdir import write_stack


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
@pytest.mark.parametrize(("gpus", "simulate"), [(1, False), (2, False), (1, True), (2, True)])
def test_rendered_stack_passes_compose_config(
    tmp_path: Path, docker_engine: None, gpus: int, simulate: bool, engine: str
) -> None:
    stack = write_stack(files_for(gpus, simulate, engine), tmp_path / "stack")
    done = subprocess.run(
        ["docker", "compose", "--project-directory", str(stack), "config", "-q"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
