"""The load generator against simulators with a known latency model: the numbers must be right."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployctl.cli import cli
from deployctl.probe import bench, load
from deployctl.probe.stats import Slo, percentile, summarize

TTFT_BASE_MS, PREFILL_RATE, ITL_MS, PER_STREAM_MS = 30.0, 10_000.0, 20.0, 0.1
PROMPT = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sim_process() -> Iterator[str]:
    """A simulator in a process of its own (its own CPU), with a known latency model."""
    port = _free_port()
    env = {
        **os.environ,
        "SIM_LOAD_SECONDS": "0",
        "SIM_TTFT_BASE_MS": str(TTFT_BASE_MS),
        "SIM_PREFILL_TOKENS_PER_S": str(PREFILL_RATE),
        "SIM_ITL_MS": str(ITL_MS),
        "SIM_ITL_PER_STREAM_MS": str(PER_STREAM_MS),
        "SIM_CONTROL": "1",  # the stall test drives POST /_sim/stall
    }
    args = [
        "--port",
        str(port),
        "--hostname",
        "127.0.0.1",
        "--max-concurrent-requests",
        "512",
        "--max-input-tokens",
        "4000",
        "--max-total-tokens",
        "8000",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "deployctl.sim", *args], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("concurrency", [1, 64])
def test_median_ttft_and_itl_within_2ms_of_the_truth(sim_process: str, concurrency: int) -> None:
    w = load.Workload(endpoint=sim_process, prompt_tokens=PROMPT, output_tokens=12)
    results, span, note = asyncio.run(
        load.closed_loop(w, concurrency, requests=max(24, 2 * concurrency), warmup=concurrency)
    )
    assert "/tokenize" in note  # prompt length measured with the server's tokenizer
    stats = summarize("closed", concurrency, results, span, Slo())
    assert stats.completed == stats.requests and not stats.errors
    true_ttft = TTFT_BASE_MS + PROMPT / PREFILL_RATE * 1000
    true_itl = ITL_MS + PER_STREAM_MS * (concurrency - 1)
    assert stats.ttft_ms.p50 == pytest.approx(true_ttft, abs=2.0)
    assert stats.itl_ms.p50 == pytest.approx(true_itl, abs=2.0)


def test_open_loop_sends_on_time_through_a_stall_and_counts_it(sim_process: str) -> None:
    w = load.Workload(endpoint=sim_process, prompt_tokens=20, output_tokens=4)
    stall_at, stall_s = 1.0, 1.0
    started: dict[str, float] = {}

    def stall_later(start: float) -> None:
        started["t0"] = start

        def fire() -> None:
            time.sleep(max(0.0, start + stall_at - time.perf_counter()))
            started["stall"] = time.perf_counter()
            req = urllib.request.Request(f"{sim_process}/_sim/stall?seconds={stall_s}", method="POST")
            urllib.request.urlopen(req, timeout=5)

        threading.Thread(target=fire, daemon=True).start()

    results, _span, _ = asyncio.run(load.open_loop(w, rate=20, requests=60, at_start=stall_later))
    stall_start = started["stall"]
    during = [r for r in results if stall_start + 0.05 < r.scheduled < stall_start + stall_s - 0.2]
    assert len(during) >= 5
    for r in during:
        assert (r.sent - r.scheduled) * 1000 < 10  # sent on schedule, not held back by the stalled server
        assert r.first_token is not None
        # Its time to first token includes what was left of the stall when it was due.
        left = stall_start + stall_s - r.scheduled
        assert (r.first_token - r.scheduled) >= left - 0.01
    before = [r for r in results if r.scheduled < stall_start - 0.2 and r.first_token]
    assert statistics.median((r.first_token - r.scheduled) * 1000 for r in before) < 100  # type: ignore[operator]


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
    for name, loads in (("a", "1,4"), ("b", "2,4")):
        out = tmp_path / name
        result = runner.invoke(
            cli,
            [
                "bench",
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
                "500",
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
        data = json.loads((out / "bench.json").read_text())
        assert data["info"]["model_id"] and len(data["levels"]) == 2 and data["cost_per_qps"] > 0
        assert "api_key" not in data["config"]
        assert (out / "bench.csv").read_text().splitlines()[0].startswith("mode,load,requests")
        for png in ("bench-latency.png", "bench-throughput.png"):
            assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
        outs.append(out / "bench.json")
    result = runner.invoke(cli, ["bench", "compare", str(outs[0]), str(outs[1]), "--json"])
    rows = {r["metric"]: r for r in json.loads(result.stdout)}
    assert "TTFT p50 ms @4" in rows and "TTFT p50 ms @1" not in rows
    assert rows["max QPS under SLO"]["b_over_a"].endswith("x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "1", "--rate", "2"], "not both"),
        (["--concurrency", "1,x"], "not a comma-separated list"),
        (["--rate", "0"], "must be positive"),
        ([], "give --concurrency"),
        (["--concurrency", "1", "--endpoint", "http://127.0.0.1:9"], "nothing answers at http://127.0.0.1:9/info"),
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
