"""The engine's start-up report: parsed from the engines' own log lines, planned vs actual kept and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployctl import spec
from deployctl.cli.run import kv_line
from deployctl.engines import tgi, vllm
from deployctl.ops import planning, startup

DATA = Path(__file__).parents[1] / "data"


def test_vllm_report_is_read_from_the_real_engines_own_line() -> None:
    log = (DATA / "vllm" / "startup-0.32.0-cpu.log").read_text()  # recorded by tests/data/vllm/record.py
    said = vllm.parse_startup_log(log)
    assert said is not None
    assert (said.kv_tokens, said.concurrency, said.request_tokens) == (1_048_576, 4096.0, 256)
    assert said.line.startswith("(EngineCore pid=") and said.line.endswith("4096.00x")


@pytest.mark.parametrize(
    "line",
    [
        # The CUDA image's spelling (v1/core/kv_cache_utils.py update_kv_cache_capacity, 0.32.0), and with host memory.
        "(EngineCore_DP0 pid=71) INFO 12-07 04:01:02 [kv_cache_utils.py:2327] GPU KV cache size: 35,840 tokens, "
        "Maximum concurrency for 8,192 tokens per request: 4.38x",
        "(EngineCore_DP0 pid=71) INFO [kv_cache_utils.py:2327] GPU + host KV cache size: 35,840 tokens, "
        "Maximum concurrency for 8,192 tokens per request: 4.38x",
    ],
)
def test_vllm_report_in_the_cuda_images_words(line: str) -> None:
    said = vllm.parse_startup_log("loading\n" + line + "\nApplication startup complete.\n")
    assert said is not None and (said.kv_tokens, said.concurrency, said.request_tokens) == (35_840, 4.38, 8_192)


def test_the_last_report_counts_after_a_restart() -> None:
    first = "INFO GPU KV cache size: 100 tokens, Maximum concurrency for 10 tokens per request: 10.00x"
    second = "INFO GPU KV cache size: 50 tokens, Maximum concurrency for 10 tokens per request: 5.00x"
    said = vllm.parse_startup_log(f"{first}\nrestarting\n{second}\n")
    assert said is not None and said.kv_tokens == 50 and said.concurrency == 5.0


def test_tgi_report_is_blocks_times_block_size() -> None:
    # The line's words from TGI v3.3.4 (flash_causal_lm.py warmup); the launcher's prefix around it.
    said = tgi.parse_startup_log((DATA / "tgi" / "startup-3.3.4.log").read_text(), request_tokens=8192)
    assert said is not None and said.kv_tokens == 35_859 and said.concurrency == round(35_859 / 8192, 2)
    paged = tgi.parse_startup_log("INFO text_generation_launcher: KV-cache blocks: 2000, size: 16", 4096)
    assert paged is not None and paged.kv_tokens == 32_000


def test_no_report_is_none() -> None:
    assert vllm.parse_startup_log("INFO nothing about the cache\n") is None
    assert tgi.parse_startup_log("", 10) is None


def _plan(tmp_path: Path) -> object:
    s = spec.parse(f"name: t\nengine: vllm\nstack_dir: {tmp_path / 'stack'}\n")
    return planning.make_plan(s, simulate=True)


def test_planned_and_actual_are_kept_and_a_shortfall_warns(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    planned = plan.limits.kv_cache_tokens  # type: ignore[attr-defined]
    length = plan.limits.max_total_tokens  # type: ignore[attr-defined]
    full = f"GPU KV cache size: {planned:,} tokens, Maximum concurrency for {length:,} tokens per request: 2.00x"
    ok = startup.compare(plan, full, revision=3)  # type: ignore[arg-type]
    assert (ok.planned_kv_tokens, ok.actual_kv_tokens, ok.short, ok.warning()) == (planned, planned, False, None)
    half = f"GPU KV cache size: {planned // 2:,} tokens, Maximum concurrency for {length:,} tokens per request: 1.00x"
    short = startup.compare(plan, half, revision=4)  # type: ignore[arg-type]
    assert short.short and short.warning() is not None and f"{planned // 2:,}" in str(short.warning())
    (tmp_path / "stack").mkdir()
    startup.record(tmp_path / "stack", short)
    assert startup.read(tmp_path / "stack") == short
    line = kv_line(short.as_dict())
    assert (
        f"planned {planned:,} tokens" in line and f"allocated {planned // 2:,}" in line and "less than planned" in line
    )


def test_an_engine_that_printed_nothing_is_said_so(tmp_path: Path) -> None:
    report = startup.compare(_plan(tmp_path), "no report here", revision=1)  # type: ignore[arg-type]
    assert report.actual_kv_tokens is None and not report.short
    assert "printed no allocation report" in kv_line(report.as_dict())


@pytest.mark.parametrize("content", [b"", b"not json", b"[1]", b'{"revision": 1}', b"\xff" * 10])
def test_a_damaged_report_file_shows_nothing(tmp_path: Path, content: bytes) -> None:
    (tmp_path / ".deployctl").mkdir()
    (tmp_path / ".deployctl" / "startup.json").write_bytes(content)
    assert startup.read(tmp_path) is None


def test_the_simulator_prints_the_engines_own_line() -> None:
    from deployctl.sim.__main__ import startup_report
    from deployctl.sim.config import from_args

    cfg = from_args(["/m", "--max-model-len", "4096"], {"SIM_ENGINE": "vllm", "SIM_KV_TOKENS": "16384"})
    said = vllm.parse_startup_log(startup_report(cfg))
    assert said is not None and (said.kv_tokens, said.concurrency, said.request_tokens) == (16384, 4.0, 4096)
    tgi_cfg = from_args(["--max-total-tokens", "4096"], {"SIM_KV_TOKENS": "20000"})
    told = tgi.parse_startup_log(startup_report(tgi_cfg), 4096)
    assert told is not None and told.kv_tokens == 20000


def test_status_json_carries_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deployctl.cli import cli

    plan = _plan(tmp_path)
    s = spec.parse(f"name: t\nengine: vllm\nstack_dir: {tmp_path / 'stack'}\n")
    planning.render_stack(s, plan, simulate=True)  # type: ignore[arg-type]
    startup.record(tmp_path / "stack", startup.compare(plan, "GPU KV cache size: 10 tokens", revision=1))  # type: ignore[arg-type]
    from deployctl.ops import owner
    from deployctl.ops import stack as stack_ops

    monkeypatch.setattr(stack_ops.docker.ComposeProject, "services", lambda self: [])
    monkeypatch.setattr(owner, "check_own", lambda project, directory: None)
    monkeypatch.setattr(owner, "renamed_from", lambda project, directory: [])
    monkeypatch.setattr(stack_ops, "probe_health", lambda endpoint, timeout=2.0: None)
    result = CliRunner().invoke(cli, ["status", "--stack-dir", str(tmp_path / "stack"), "--json"])
    kv = json.loads(result.stdout)["kv"]
    assert kv["actual_kv_tokens"] == 10 and kv["short"] is True
