"""Hypothesis over hostile spec YAML and bench result files: exit 2, one `error:` line, nothing written.

The case counts are fixed (max_examples) so a run reports them: pytest -q -s prints one line
per test. Timing is checked in tests/e2e/test_hostile_timing.py (no wall clock in the unit suite).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.hostile import HOSTILE_BENCH, HOSTILE_SPEC, hostile_bench, hostile_spec
from hypothesis import HealthCheck, given, settings

from deployctl.cli import cli

SPEC_CASES = 400
BENCH_CASES = 300
SEEN: Counter[str] = Counter()


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="deployctl-fuzz-"))
    good = '{"config": {}, "levels": [{"load": 1, "ttft_ms": {"p50": 1}, "itl_ms": {"p50": 1}}]}'
    (root / "good.json").write_text(good)
    yield root
    shutil.rmtree(root)


def assert_refused(root: Path, args: list[str]) -> None:
    before = _tree(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        os.chdir(cwd)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr[:300])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[:500]
    assert "Traceback" not in result.output and "\x1b" not in result.stderr
    assert result.stdout == ""
    assert _tree(root) == before  # nothing written: no stack, no partial file


@settings(max_examples=SPEC_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=hostile_spec())
def test_hostile_spec_is_refused_with_one_line(workdir: Path, text: bytes) -> None:
    SEEN["spec"] += 1
    (workdir / "spec.yaml").write_bytes(text)
    try:
        assert_refused(workdir, ["render", "--gpu-model", "rtx4090", "-f", "spec.yaml"])
    finally:
        (workdir / "spec.yaml").unlink()


@settings(max_examples=BENCH_CASES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=hostile_bench())
def test_hostile_bench_file_is_refused_with_one_line(workdir: Path, data: bytes) -> None:
    SEEN["bench"] += 1
    (workdir / "bad.json").write_bytes(data)
    try:
        assert_refused(workdir, ["bench", "compare", "good.json", "bad.json"])
        assert_refused(workdir, ["bench", "compare", "bad.json", "good.json"])
    finally:
        (workdir / "bad.json").unlink()


def test_report_how_many_cases_ran(capsys: pytest.CaptureFixture[str]) -> None:
    # Runs after the two above in file order; says how many generated inputs each saw.
    with capsys.disabled():
        print(
            f"\nhostile inputs: {SEEN['spec']} spec files ({len(HOSTILE_SPEC)} kinds), "
            f"{SEEN['bench']} bench files ({len(HOSTILE_BENCH)} kinds)"
        )
    assert SEEN["spec"] >= SPEC_CASES // 2 and SEEN["bench"] >= BENCH_CASES // 2
