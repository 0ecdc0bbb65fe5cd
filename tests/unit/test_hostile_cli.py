"""Hostile flags and files (issue #16): each gives one `error:` line, exit 2, no traceback, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.modelgen import write_model

from deployctl.cli import cli


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for folder in ("tiny$HOME", "m\U0001f600", "ok-model"):
        write_model(tmp_path / folder, "llama-3.1-8b-instruct-gptq", weights=False)
    (tmp_path / "renamed.yaml").write_text("model:\n  path: tiny$HOME\n  served_name: tiny-home\n")
    os.symlink("loop", tmp_path / "loop")
    (tmp_path / "a-file").write_text("x")
    bad = tmp_path / "bad-stack"
    bad.mkdir()
    (bad / "compose.yaml").write_text("services: {}\n")
    wrong = {"project": 5, "service": [], "endpoint": "x", "simulate": "no", "plan_hash": 1, "load_timeout_s": "x"}
    (bad / "stack.json").write_text(json.dumps(wrong))
    evil = tmp_path / "evil-stack"
    evil.mkdir()
    (evil / "compose.yaml").write_text("services: {}\n")
    fields = {"service": "engine", "simulate": True, "plan_hash": "x", "load_timeout_s": 5}
    (evil / "stack.json").write_text(json.dumps({**fields, "project": "p", "endpoint": "file:///etc/passwd"}))
    level = {"load": 1, "ttft_ms": {"p50": 1, "p90": 2}, "itl_ms": {"p50": 1, "p90": 2}}
    results = {
        "good.json": {"config": {}, "levels": [level]},
        "list-level.json": {"config": {}, "levels": [1]},
        "string-load.json": {"config": {}, "levels": [{**level, "load": "1"}]},
        "no-levels.json": {"config": {}},
        "array.json": [1, 2],
        "bool-qps.json": {"config": {}, "levels": [], "max_qps_under_slo": True},
        "long-currency.json": {"config": {"currency": "E" * 10_000}, "levels": []},
    }
    for name, data in results.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "broken.json").write_text('{"levels": [')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "huge-number.json").write_text('{"config": {}, "levels": [], "cost_per_qps": 1e400}')
    (tmp_path / "nan.json").write_text('{"config": {}, "levels": [], "cost_per_qps": NaN}')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    return tmp_path


LONG = "a" * 300
BENCH = ["bench", "run", "--endpoint", "http://127.0.0.1:9"]  # checks come before any request
CASES = {
    "sim fault count not a number": (["render", "--simulate", "--sim-fault", "crash-after=abc"], "crash-after=abc"),
    "sim fault negative seconds": (["render", "--simulate", "--sim-fault", "load-seconds=-5"], "between 0 and 3600"),
    "sim fault switch with a value": (["render", "--simulate", "--sim-fault", "never-healthy=yes"], "takes no value"),
    "sim fault nan": (["render", "--simulate", "--sim-fault", "itl-ms=nan"], "between 0 and 60000"),
    "endpoint not a url": (["health", "--endpoint", "notaurl"], "--endpoint notaurl: not a URL"),
    "endpoint file url": (["health", "--endpoint", "file:///etc/passwd"], "file:// is not supported"),
    "endpoint ftp": (["health", "--endpoint", "ftp://10.0.0.1/"], "ftp:// is not supported"),
    "endpoint no host": (["health", "--endpoint", "http://"], "no host"),
    "endpoint bad port": (["health", "--endpoint", "http://h:99999"], "Port out of range"),
    "endpoint credentials": (["health", "--endpoint", "http://u:p@h"], "credentials in the URL"),
    "endpoint escape codes": (["health", "--endpoint", "http://h\x1b[2J"], "not a usable URL"),
    "endpoint query": (["health", "--endpoint", "http://h/?x=1"], "without ?query"),
    "bench endpoint file url": (["bench", "run", "--concurrency", "1", "--endpoint", "file:///x"], "file://"),
    "stack endpoint file url": (["health", "--stack-dir", "evil-stack"], "file:// is not supported"),
    "health timeout zero": (["health", "--timeout", "0", "--endpoint", "http://h"], "--timeout 0: must be"),
    "health watch negative": (["health", "--watch", "-3", "--endpoint", "http://h"], "--watch -3: must be"),
    "up timeout negative": (["up", "--simulate", "--timeout", "-1"], "--timeout -1: must be more than 0"),
    "up timeout nan": (["up", "--simulate", "--timeout", "nan"], "--timeout nan: must be"),
    "keygen missing folder": (["bundle", "keygen", "./no/dir/key"], "the folder no/dir does not exist"),
    "stack dir symlink loop (render)": (["render", "--gpu-model", "rtx4090", "--stack-dir", "loop"], "symlink loop"),
    "stack dir symlink loop (status)": (["status", "--stack-dir", "loop"], "symlink loop"),
    "stack dir symlink loop (health)": (["health", "--stack-dir", "loop"], "symlink loop"),
    "stack dir symlink loop (down)": (["down", "--stack-dir", "loop"], "symlink loop"),
    "stack dir 300 chars (status)": (["status", "--stack-dir", LONG], "is too long"),
    "stack dir 300 chars (health)": (["health", "--stack-dir", LONG], "is too long"),
    "stack dir 300 chars (bench)": (["bench", "run", "--concurrency", "1", "--stack-dir", LONG], "is too long"),
    "stack dir 300 chars (render)": (["render", "--gpu-model", "rtx4090", "--stack-dir", LONG], "longer than 255"),
    "stack dir under a file": (["render", "--gpu-model", "rtx4090", "--stack-dir", "a-file/x"], "is a file"),
    "stack.json wrong types (status)": (["status", "--stack-dir", "bad-stack"], "project should be str, got 5"),
    "stack.json wrong types (health)": (["health", "--stack-dir", "bad-stack"], "project should be str, got 5"),
    "stack.json wrong types (logs)": (["logs", "--stack-dir", "bad-stack"], "project should be str"),
    "name 300 chars": (["plan", "--gpu-model", "rtx4090", "--preset", LONG], "is 300 characters long"),
    "port flag out of range": (["plan", "--gpu-model", "rtx4090", "--port", "70000"], "--port 70000: "),
    "gpus flag twice": (["plan", "--gpu-model", "rtx4090", "--gpus", "0,0"], "--gpus 0,0: gpus names a GPU twice"),
    "preset flag with a path": (["plan", "--gpu-model", "rtx4090", "--preset", "../x"], "--preset ../x: "),
    "model folder named tiny$HOME": (["render", "--gpu-model", "rtx4090", "--model", "tiny$HOME"], "served name"),
    "model folder with an emoji": (["render", "--gpu-model", "rtx4090", "--model", "m\U0001f600"], "served name"),
}
for name in ("list-level", "string-load", "no-levels", "array", "bool-qps", "long-currency", "broken", "deep"):
    CASES[f"bench compare {name}"] = (["bench", "compare", f"{name}.json", "good.json"], f"{name}.json: ")
for name in ("huge-number", "nan", "binary"):
    CASES[f"bench compare {name}"] = (["bench", "compare", "good.json", f"{name}.json"], f"{name}.json: ")
CASES.update(
    {
        "bench load nan": ([*BENCH, "--concurrency", "nan"], "loads must be positive numbers up to 100,000"),
        "bench load 1e12": ([*BENCH, "--concurrency", "1e12"], "loads must be positive numbers"),
        "bench rate inf": ([*BENCH, "--rate", "inf"], "loads must be positive numbers"),
        "bench output tokens 1e9": ([*BENCH, "--concurrency", "1", "--output-tokens", "1000000000"], "--output-tokens"),
        "bench slo nan": ([*BENCH, "--concurrency", "1", "--slo-ttft", "nan"], "--slo-ttft nan: must be a number, at"),
        "bench cost negative": (
            [*BENCH, "--concurrency", "1", "--cost", "-1"],
            "--cost -1: must be a number, at least 0",
        ),
        "bench currency escape": ([*BENCH, "--concurrency", "1", "--currency", "E\x1b[2J"], "--currency: at most 16"),
        "bench output dir under a file": ([*BENCH, "--concurrency", "1", "-o", "a-file/x"], "--output-dir: a-file/x"),
        "bench prompt tokens 1e9": ([*BENCH, "--concurrency", "1", "--prompt-tokens", "1000000000"], "--prompt-tokens"),
        "bench output tokens -5": ([*BENCH, "--concurrency", "1", "--output-tokens", "-5"], "--output-tokens -5: must"),
        "bench requests nan": ([*BENCH, "--concurrency", "1", "--requests", "nan"], "--requests 'nan': must"),
        "bench concurrency 1e7": ([*BENCH, "--concurrency", "10000000"], "up to 100,000"),
    }
)
# power tune: every number is refused as the flag is parsed, before a GPU is read or a cap is set
# (the fake NVML in these tests would record a set; none may happen).
TUNE = ["power", "tune", "--simulate", "--endpoint", "http://127.0.0.1:9"]
CASES.update(
    {
        "tune step 1e-300": ([*TUNE, "--step", "1e-300"], "--step 1e-300: must be a number, at least 1"),
        "tune step 0.001": ([*TUNE, "--step", "0.001"], "--step 0.001: must be"),
        "tune step nan": ([*TUNE, "--step", "nan"], "--step nan: must be"),
        "tune step inf": ([*TUNE, "--step", "inf"], "--step inf: must be"),
        "tune rate nan": ([*TUNE, "--rate", "nan"], "--rate nan: must be"),
        "tune settle inf": ([*TUNE, "--settle", "inf"], "--settle inf: must be"),
        "tune window nan": ([*TUNE, "--window", "nan"], "--window nan: must be"),
        "tune window 0": ([*TUNE, "--window", "0"], "--window 0: must be a number, more than 0"),
        "tune concurrency 1e7": ([*TUNE, "--concurrency", "10000000"], "--concurrency 10,000,000: must be"),
        "tune concurrency 2.5": ([*TUNE, "--concurrency", "2.5"], "--concurrency '2.5': must be a whole number"),
        "tune output tokens -5": ([*TUNE, "--output-tokens", "-5"], "--output-tokens -5: must be"),
        "tune prompt tokens 1e9": ([*TUNE, "--prompt-tokens", "1000000000"], "--prompt-tokens 1,000,000,000: must"),
        "tune min throughput nan": ([*TUNE, "--min-throughput", "nan"], "--min-throughput nan: must"),
        "tune min throughput 2": ([*TUNE, "--min-throughput", "2"], "--min-throughput 2: must"),
        "tune slo itl -1": ([*TUNE, "--slo-itl", "-1"], "--slo-itl -1: must"),
        "tune caps nan": ([*TUNE, "--caps", "300,nan"], "--caps '300,nan': caps must be positive"),
        # init writes YAML: a name that would add a key or be cut short by a comment is refused.
        "init name with a newline and a key": (
            ["init", "--name", "x\nimage: attacker.example/evil:1"],
            "--name x\\x0aimage: attacker.example/evil:1: 'x\\nimage",
        ),
        "init name with a comment": (["init", "--name", "x #c"], "'x #c' is not a safe name"),
        "helm replicas 1e20": (
            ["render", "--target", "helm", "--gpu-model", "rtx4090", "--replicas", "100000000000000000000"],
            "100000000000000000000 is not in the range 0<=x<=1000",
        ),
        "helm replicas 1e20 as a float": (
            ["render", "--target", "helm", "--gpu-model", "rtx4090", "--replicas", "1e20"],
            "'1e20' is not a valid integer",
        ),
    }
)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_flag_or_file_is_one_line_exit_2_and_writes_nothing(workdir: Path, case: str) -> None:
    args, expected = CASES[case]
    before = _tree(workdir)
    result = CliRunner().invoke(cli, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr
    assert _tree(workdir) == before


def test_bench_compare_shows_a_model_id_as_text_not_markup_or_escapes(workdir: Path) -> None:
    level = {"load": 1, "ttft_ms": {"p50": 1, "p90": 2}, "itl_ms": {"p50": 1, "p90": 2}}
    data = {"config": {}, "levels": [level], "info": {"model_id": "[red]m\x1b[2J"}}
    (workdir / "odd.json").write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["bench", "compare", "odd.json", "good.json"])
    assert result.exit_code == 0, result.output
    assert "[red]m\\x1b[2J" in result.output and "\x1b" not in result.output


def test_a_hostile_model_folder_name_is_fine_once_served_name_is_set(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "--gpu-model", "rtx4090", "-f", "renamed.yaml", "--stack-dir", "s"])
    assert result.exit_code == 0, result.stderr
    compose = (workdir / "s" / "compose.yaml").read_text()
    assert "/data/models/tiny-home" in compose and "$HOME" not in compose.replace("$$HOME", "")
