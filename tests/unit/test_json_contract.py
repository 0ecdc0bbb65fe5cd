"""`--json`: stdout is exactly one JSON document, on success and on failure, with the exit code inside.

Each case runs the real CLI in-process in a copy of the examples' workspace (a simulated stack that
answers, bench results, two fake RTX 4090s, no Docker engine) or on a host without a driver.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.fake_nvml import no_driver
from helpers.k8stools import path_with_tools

from deployctl.cli import cli

OK, FAILED, BAD, HOST, FIT, NOT_RUNNING = 0, 1, 2, 3, 4, 5
G = ["--gpu-model", "rtx4090"]

# (args, exit code); all with --json appended.
CASES: list[tuple[list[str], int]] = [
    (["plan", *G], OK),
    (["plan", *G, "--gpus", "2", "--preset", "llama-3-70b-instruct-gptq"], OK),
    (["plan", *G, "--preset", "llama-3-70b-instruct-gptq", "--gpus", "1"], FIT),
    (["plan", *G, "--port", "70000"], BAD),
    (["plan", *G, "--port", "abc"], BAD),
    (["plan", *G, "--no-such-flag"], BAD),
    (["plan", *G, "-f", "missing.yaml"], BAD),
    (["plan", *G, "--model", "no-such-dir"], BAD),
    (["render", *G, "--simulate", "--stack-dir", "out"], OK),
    (["render", *G, "--bind", "localhost"], BAD),
    (["health"], OK),
    (["health", "--stack-dir", "nowhere"], NOT_RUNNING),
    (["health", "--api-key-env", "DEPLOYCTL_TEST_UNSET"], BAD),
    (["health", "--endpoint", "http://127.0.0.1:9", "--stack-dir", "nowhere"], NOT_RUNNING),
    (["bench", "--concurrency", "1", "--requests", "2", "--warmup", "0", "-o", "r"], OK),
    (["bench", "--concurrency", "1", "--rate", "2"], BAD),
    (["bench", "compare", "results/1gpu/bench.json", "results/2gpu/bench.json"], OK),
    (["bench", "compare", "deployctl.yaml", "results/2gpu/bench.json"], BAD),
    (["bench", "compare", "missing.json", "results/2gpu/bench.json"], BAD),
    (["gpus"], OK),
    (["power", "show"], OK),
    (["power", "set", "300", "--dry-run"], OK),
    (["power", "set", "5000", "--dry-run"], BAD),
    (["power", "set", "300", "--gpu", "7", "--dry-run"], BAD),
    (["power", "reset", "--dry-run"], OK),
    (["doctor"], FAILED),
    (["status"], HOST),  # a stack is there; asking Docker about it needs the engine
    (["status", "--stack-dir", "nowhere"], NOT_RUNNING),
    (["down", "--stack-dir", "nowhere"], OK),
    (["rollback", "--stack-dir", "nowhere"], NOT_RUNNING),
    (["bundle", "verify", "no-such.bundle"], BAD),
    (["bundle", "install", "no-such.bundle", "--target", "site"], BAD),
    (["bundle", "nope"], BAD),
    (["image", "inspect", "deployctl-test/none:1"], HOST),
    (["nope"], BAD),
    # k8s: no cluster here (KUBECONFIG names a missing file); helm and kubectl on PATH
    (["k8s", "up", *G, "--gpus", "2", "--simulate", "--dry-run"], OK),
    (["k8s", "up", "--gpus", "2"], BAD),
    (["k8s", "up", "--gpu-model", "nope"], BAD),
    (["k8s", "up", *G, "--kubeconfig", "missing-kubeconfig"], BAD),
    (["k8s", "status", "-n", "llm"], HOST),
    (["k8s", "down", "--release", "x"], HOST),
]
NO_DRIVER: list[tuple[list[str], int]] = [
    (["gpus"], HOST),
    (["power", "show"], HOST),
    (["power", "set", "300"], HOST),
    (["plan"], HOST),
]


def _check(result: object, args: list[str], code: int) -> dict[str, object]:
    out = result.stdout  # type: ignore[attr-defined]
    assert result.exit_code == code, (args, result.exit_code, out, result.stderr)  # type: ignore[attr-defined]
    data = json.loads(out)  # exactly one document: json.loads refuses trailing text
    if code not in (OK, FAILED) and isinstance(data, dict) and "error" in data:
        assert data["exit_code"] == code and "hint" in data and data["error"]
        assert out.count("\n") == 1, (args, out)  # one compact document, as every failure is
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # type: ignore[attr-defined]
        assert errors == [f"error: {data['error']}" + (f"; {data['hint']}" if data["hint"] else "")], args
    if code in (BAD, HOST, NOT_RUNNING):
        assert isinstance(data, dict) and data.get("exit_code") == code, data
    assert "\x1b[" not in out and "\x1b[" not in result.stderr  # type: ignore[attr-defined]
    return data  # type: ignore[no-any-return]


def test_json_everywhere_on_success_and_failure(
    base: Path, host: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(base, ws, symlinks=True)
    monkeypatch.chdir(ws)
    monkeypatch.delenv("DEPLOYCTL_TEST_UNSET", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(ws / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("PATH", path_with_tools())
    for args, code in CASES:
        _check(CliRunner().invoke(cli, [*args, "--json"]), args, code)
    from deployctl.hardware import inventory

    monkeypatch.setattr(inventory, "NVML_LIB", no_driver())
    for args, code in NO_DRIVER:
        _check(CliRunner().invoke(cli, [*args, "--json"]), args, code)
    with capsys.disabled():
        print(f"\n--json: {len(CASES) + len(NO_DRIVER)} invocations, each stdout one JSON document")
    assert len(CASES) + len(NO_DRIVER) >= 30


def test_health_json_is_one_line_for_json_lines(base: Path, host: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(base)
    result = CliRunner().invoke(cli, ["health", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and json.loads(result.stdout)["status"] == "healthy"


def test_bench_compare_json_gives_numbers(base: Path, host: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(base)
    result = CliRunner().invoke(
        cli, ["bench", "compare", "results/1gpu/bench.json", "results/2gpu/bench.json", "--json"]
    )
    rows = {r["metric"]: r for r in json.loads(result.stdout)}
    row = rows["requests/s @1"]
    assert isinstance(row["a"], float) and isinstance(row["b"], float) and isinstance(row["b_over_a"], float)


def test_a_hint_names_only_flags_the_command_has(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployctl.hardware import inventory

    monkeypatch.setattr(inventory, "NVML_LIB", no_driver())
    power = json.loads(CliRunner().invoke(cli, ["power", "show", "--json"]).stdout)
    assert "NVIDIA driver" in power["error"] and "--gpu-model" not in power["hint"]
    plan = json.loads(CliRunner().invoke(cli, ["plan", "--json"]).stdout)
    assert "--gpu-model rtx4090" in plan["hint"]
