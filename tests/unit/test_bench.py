"""The load generator's arithmetic, schedule and CLI against a local simulator.

Assertions on measured latencies (wall-clock time) live in tests/e2e/test_bench_timing.py: on a busy
machine they cannot be tight, and the unit suite holds none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import simserver

from deployctl.cli import cli
from deployctl.probe import bench, load
from deployctl.probe.stats import Slo, percentile, summarize


@pytest.fixture(scope="module")
def sim_process() -> Iterator[str]:
    """A simulator in a process of its own (its own CPU), with a known latency model."""
    with simserver.timed_process() as url:
        yield url


def test_poisson_schedule_has_the_asked_rate() -> None:
    offsets = load.poisson_schedule(rate=50, count=5000, seed=1)
    assert offsets == sorted(offsets)
    assert 5000 / offsets[-1] == pytest.approx(50, rel=0.05)
    assert load.poisson_schedule(50, 10, seed=1) == offsets[:10]  # fixed seed, same schedule


def test_percentiles_and_goodput() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(sorted(float(i) for i in range(101)), 99) == 99.0
    fast = load.Result(
        scheduled=0.0, sent=0.0, first_token=0.1, token_times=[0.1, 0.12, 0.14], end=0.14, output_tokens=3
    )
    slow = load.Result(
        scheduled=0.0, sent=0.0, first_token=0.9, token_times=[0.9, 0.92, 0.94], end=0.94, output_tokens=3
    )
    failed = load.Result(scheduled=0.0, sent=0.0, error="http_429")
    s = summarize("open", 1, [fast, slow, failed], duration=1.0, slo=Slo(ttft_ms=500))
    assert s.completed == 2 and s.errors == {"http_429": 1}
    assert s.goodput_rps == 1.0 and s.goodput_fraction == pytest.approx(1 / 3)
    assert s.tpot_ms.p50 == pytest.approx(20.0) and s.itl_ms.p50 == pytest.approx(20.0)
    assert s.meets_slo is False  # a third failed


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "no-stack"


def test_bench_cli_writes_json_csv_and_pngs_and_compares(sim_process: str, tmp_path: Path, stack_dir: Path) -> None:
    runner = CliRunner()
    outs = []
    for name, loads, label in (("a", "1,4", ["--label", "one GPU"]), ("b", "2,4", [])):
        out = tmp_path / name
        result = runner.invoke(
            cli,
            [
                "bench",
                *label,
                "--endpoint",
                sim_process,
                "--concurrency",
                loads,
                "--requests",
                "12",
                "--warmup",
                "2",
                "--output-tokens",
                "4",
                "--prompt-tokens",
                "16",
                "--slo-ttft",
                "60000",
                "--cost",
                "4200",
                "--currency",
                "EUR",
                "-o",
                str(out),
                "--stack-dir",
                str(stack_dir),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "max QPS under SLO" in result.stdout and "EUR" in result.stdout
        # Every level met the generous SLO: the best is the sweep's top, a lower bound, and it says so.
        assert "max QPS under SLO: at least" in result.stdout and "--concurrency 4,8,16" in result.stdout
        data = json.loads((out / "bench.json").read_text())
        assert data["max_qps_lower_bound"] is True
        assert data["info"]["model_id"] and len(data["levels"]) == 2 and data["cost_per_qps"] > 0
        assert "api_key" not in data["config"]
        assert (out / "bench.csv").read_text().splitlines()[0].startswith("mode,load,requests")
        for png in ("bench-latency.png", "bench-throughput.png"):
            assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
        outs.append(out / "bench.json")
    result = runner.invoke(cli, ["bench", "compare", str(outs[0]), str(outs[1]), "--json"])
    rows = {r["metric"]: r for r in json.loads(result.stdout)}
    assert "TTFT p50 ms @4" in rows and "TTFT p50 ms @1" not in rows
    assert rows["run"]["a"] == "one GPU" and rows["run"]["b"] == sim_process  # no stack: the endpoint names it
    qps = rows["max QPS under SLO"]
    assert isinstance(qps["a"], float) and isinstance(qps["b_over_a"], float)  # numbers, not text
    assert qps["b_over_a"] == pytest.approx(qps["b"] / qps["a"], rel=1e-3)
    table = runner.invoke(cli, ["bench", "compare", str(outs[0]), str(outs[1])])
    assert table.exit_code == 0, table.output
    for metric in rows:  # the table shows every row the JSON has, with the same ratio
        line = next(x for x in table.stdout.splitlines() if f" {metric} " in x)
        if rows[metric]["b_over_a"] is not None:
            assert f"{rows[metric]['b_over_a']:.2f}x" in line, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "1", "--rate", "2"], "not both"),
        (["--concurrency", "1,x"], "not a comma-separated list"),
        (["--rate", "0"], "must be positive"),
        ([], "give --concurrency"),
        (["--concurrency", "1", "--endpoint", "http://127.0.0.1:9"], "nothing answers at http://127.0.0.1:9"),
    ],
)
def test_bench_bad_input_is_one_line(args: list[str], message: str, stack_dir: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "--stack-dir", str(stack_dir), "--endpoint", "http://127.0.0.1:9", *args]
    )
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_compare_refuses_a_file_that_is_not_a_result(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    result = CliRunner().invoke(cli, ["bench", "compare", str(bad), str(bad)])
    assert result.exit_code == 2 and "not a bench result" in result.stderr


def test_presets_are_the_two_classic_cases() -> None:
    assert bench.PRESETS["ttft"]["output_tokens"] <= 32 and bench.PRESETS["ttft"]["slo_ttft_ms"] == 500
    assert bench.PRESETS["sustained"]["output_tokens"] == 2048


def test_a_run_is_labelled_by_its_stack_and_titled_by_the_served_name() -> None:
    from deployctl import spec
    from deployctl.ops import planning, probing

    overrides = {"gpu_model": "rtx4090", "gpus": 2, "model.preset": "llama-3-70b-instruct-gptq"}
    plan = planning.make_plan(spec.parse("power:\n  limit_watts: 300\n", overrides=overrides))
    target = probing.Target("http://127.0.0.1:9", None, plan, None, simulated=True)
    assert probing.run_label(target) == "tgi 2x rtx4090 300 W simulated"
    result = bench.BenchResult(
        "0",
        "t",
        {"prompt_tokens": 8, "output_tokens": 4, "model_name": plan.served_name},
        {"model_id": "/data/models/llama-3-70b-instruct-gptq"},
        "",
        [],
        None,
        None,
        None,
    )
    assert result.title == f"{plan.served_name}: 8 in / 4 out tokens" and "/data/models" not in result.title
