"""A bare `up` keeps how the stack was started: flags given now win, then the spec file, then the mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployctl import stackdir
from deployctl.cli import run

from .test_render import files_for

MODE = ("simulate", "engine=vllm", "gpu_model=rtx4090", "max_total_tokens=4096")


def _flags(stack: Path, **given: Any) -> dict[str, Any]:
    names = [*run.MODE_FLAGS, "spec_path"]
    return {name: None for name in names} | {"stack_dir": stack} | given


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "stack"
    stackdir.write_stack(files_for(1), target, revision=1, mode=MODE)
    return target


def test_a_bare_up_keeps_the_mode(stack: Path) -> None:
    spec, simulate, started, kept = run._keeping_mode(_flags(stack), None)
    assert simulate and spec.engine == "vllm" and spec.gpu_model == "rtx4090"
    assert spec.limits.max_total_tokens == 4096
    assert kept == ["--simulate", "--gpu-model rtx4090", "--engine vllm", "--max-total-tokens 4096"]
    assert sorted(started) == sorted(MODE)  # recorded again: the next bare `up` keeps it too


def test_flags_and_the_spec_file_win_over_the_mode(stack: Path, tmp_path: Path) -> None:
    (tmp_path / "deployctl.yaml").write_text("engine: tgi\nstack_dir: stack\n")
    spec, simulate, started, kept = run._keeping_mode(_flags(stack, max_total_tokens=2048), False)
    assert not simulate and spec.engine == "tgi" and spec.limits.max_total_tokens == 2048
    assert kept == ["--gpu-model rtx4090"] and spec.gpu_model == "rtx4090"
    assert started == ("max_total_tokens=2048", "gpu_model=rtx4090")
