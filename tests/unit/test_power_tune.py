"""`deployctl power tune` over two fake RTX 4090s whose counters are the simulator's power model.

The fake NVML boards are coupled to an in-process simulator (tests/helpers/fake_nvml.py,
SimulatedPhysics): a cap set through NVML slows the simulated engine as docs/power.md says, and
the energy counter moves with the simulated draw. Nothing here reaches a real GPU.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers.failpoints import Pauses
from helpers.fake_nvml import FakeNvml
from helpers.tune import DECODE, KEY, ORIGINAL, fake, limits, recorded, sim, sim_limits, tune

from deployctl import failpoints
from deployctl.cli import cli
from deployctl.hardware import nvml
from deployctl.hardware import power as pw
from deployctl.ops import power_tune as ops

__all__ = ["fake", "sim"]  # fixtures shared with tests/e2e/test_power_tune_sweep.py


def test_dry_run_prints_the_sweep_and_its_duration_and_changes_nothing(fake: FakeNvml, sim: str) -> None:
    result = tune(sim, "--dry-run", "--window", "10", "--settle", "5")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "450 W, 400 W, 350 W, 300 W, 250 W, 200 W, 150 W" in out  # default: 450 W down to 150 W by 50 W
    assert "about 2.1 min" in out  # 7 caps x (5 s + 10 s), and a second window for the two that stop it
    assert "nothing was changed" in out
    assert all(not b.sets for b in fake.boards) and not pw.state_path().exists()
    alone = CliRunner().invoke(cli, ["power", "tune", "--dry-run", "--json"])  # no stack, no endpoint
    assert alone.exit_code == 0, alone.stderr
    assert json.loads(alone.stdout)["caps"] == [450, 400, 350, 300, 250, 200, 150]


def test_caps_outside_the_boards_range_are_refused_before_anything(fake: FakeNvml, sim: str) -> None:
    result = tune(sim, "--caps", "450,100")
    assert result.exit_code == 2 and "outside the allowed range of 150-600 W" in result.stderr
    assert all(not b.sets for b in fake.boards)


def test_non_root_is_refused_before_anything_changes(fake: FakeNvml, sim: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = tune(sim, *DECODE)
    assert result.exit_code == 3 and "permission denied" in result.stderr and "--simulate" in result.stderr
    assert all(not b.sets for b in fake.boards)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fake.root = False  # root by uid, but NVML says no (a container without the capability)
    result = tune(sim, *DECODE)
    assert result.exit_code == 3 and "permission denied" in result.stderr
    assert all(not b.sets for b in fake.boards) and limits(fake) == ORIGINAL


def test_a_board_that_cannot_be_capped_is_refused_before_anything_changes(fake: FakeNvml, sim: str) -> None:
    fake.boards[1].settable = False
    result = tune(sim, *DECODE)
    assert result.exit_code == 3 and "not supported" in result.stderr
    assert fake.boards[0].sets == [450_000]  # its own limit written back: nothing changed
    fake.boards[1].settable, fake.boards[1].energy_counter = True, False
    result = tune(sim, *DECODE)
    assert result.exit_code == 3 and "no energy counter" in result.stderr
    assert limits(fake) == ORIGINAL


def test_a_setter_that_silently_does_nothing_stops_the_sweep(fake: FakeNvml, sim: str) -> None:
    fake.boards[1].silent_setter = True
    result = tune(sim, *DECODE, "--caps", "450,300")
    assert result.exit_code == 1
    assert "asked for 300 W but the board enforces 450 W" in result.stderr
    assert limits(fake) == ORIGINAL and sim_limits(sim) == [450, 450]
    assert fake.boards[0].sets[-1] == 450_000


def _sweep(fake: FakeNvml, sim: str, **kwargs: Any) -> ops.TuneResult:
    config = ops.TuneConfig(
        endpoint=sim,
        api_key=KEY,
        load=ops.Load(value=4, prompt_tokens=16, output_tokens=24),
        caps=(450, 350, 250, 200),
        settle_s=0,
        window_s=0.3,  # what these tests check is the caps around the sweep, not its figures
    )
    with nvml.session(fake) as session:
        control = pw.NvmlControl(session, [], pw.state_path())
        return ops.sweep(control, config, **kwargs)


def _interrupt_in_setter(fake: FakeNvml) -> dict[str, Any]:
    def on_set(mw: int) -> None:
        if mw == 350_000:
            raise KeyboardInterrupt  # GPU 0 is at 350 W already, GPU 1 not yet

    fake.boards[1].on_set = on_set
    return {}


def _interrupt_while_settling(fake: FakeNvml) -> dict[str, Any]:
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 3:  # settling after 250 W was set
            raise KeyboardInterrupt

    return {"sleep": sleep}


def _signal_during_the_bench(signum: int) -> Callable[[FakeNvml], dict[str, Any]]:
    def arrange(fake: FakeNvml) -> dict[str, Any]:
        def measure_one(control: Any, config: ops.TuneConfig, cap: float) -> Any:
            if cap != 350:
                return ops.measure(control, config, cap)
            # A real Ctrl-C (or SIGTERM) to this process while the load runs: the bench pauses at its
            # failpoint once the load has begun; the signal is sent once it is there, then the pause is
            # released (asyncio's own SIGINT handler cancels the load, which needs its loop to go on).
            pauses = Pauses(Path(tempfile.mkdtemp(prefix="failpoints-")), "power-tune-load")

            def signal_once_paused() -> None:
                pauses.wait("power-tune-load")
                os.kill(os.getpid(), signum)  # pending on the main thread before kill() returns: handled first
                pauses.release("power-tune-load")

            sender = threading.Thread(target=signal_once_paused, daemon=True)
            os.environ.update(pauses.env)
            try:
                sender.start()
                return ops.measure(control, config, cap)
            finally:
                del os.environ[failpoints.ENV]
                shutil.rmtree(pauses.folder, ignore_errors=True)

        return {"measure_one": measure_one}

    return arrange


@pytest.mark.parametrize(
    "arrange",
    [
        _interrupt_in_setter,
        _interrupt_while_settling,
        _signal_during_the_bench(signal.SIGINT),
        _signal_during_the_bench(signal.SIGTERM),
    ],
    ids=["ctrl-c-in-the-setter", "ctrl-c-while-settling", "ctrl-c-during-the-bench", "sigterm-during-the-bench"],
)
def test_interrupted_sweeps_put_the_original_caps_back(
    fake: FakeNvml, sim: str, arrange: Callable[[FakeNvml], dict[str, Any]]
) -> None:
    fake.boards[1].limit_mw = 400_000  # an operator's own cap, which is what must come back
    with pytest.raises(KeyboardInterrupt):
        _sweep(fake, sim, **arrange(fake))
    assert limits(fake) == [450_000, 400_000]
    assert any(mw != b.sets[-1] for b in fake.boards for mw in b.sets)  # something did change on the way
    assert recorded() == {}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the sweep


def test_a_failed_bench_puts_the_original_caps_back(fake: FakeNvml, sim: str) -> None:
    def measure_one(control: Any, config: ops.TuneConfig, cap: float) -> Any:
        if cap == 250:  # the engine stops answering
            config = replace(config, endpoint="http://127.0.0.1:9")
        return ops.measure(control, config, cap)

    with pytest.raises(Exception, match="the bench at 250 W failed") as info:
        _sweep(fake, sim, measure_one=measure_one)
    assert "original caps were put back" in str(info.value)
    assert limits(fake) == ORIGINAL and sim_limits(sim) == [450, 450] and recorded() == {}


def test_a_gpu_that_stops_answering_is_named_and_the_others_restored(fake: FakeNvml, sim: str) -> None:
    def measure_one(control: Any, config: ops.TuneConfig, cap: float) -> Any:
        stats = ops.measure(control, config, cap)
        if cap == 350:
            fake.boards[1].lost = True
        return stats

    with pytest.raises(pw.PowerError, match=r"GPU 1 .*not restored to 450 W: .*fallen off the bus") as info:
        _sweep(fake, sim, measure_one=measure_one)
    assert "power reset" in (info.value.hint or "")
    assert fake.boards[0].limit_mw == 450_000
    assert fake.boards[1].uuid in recorded()  # kept, so `power reset` can finish the job


def test_persist_without_apply_is_refused(fake: FakeNvml, sim: str) -> None:
    result = tune(sim, "--persist")
    assert result.exit_code == 2 and "--persist goes with --apply" in result.stderr
    assert all(not b.sets for b in fake.boards)


def _gpu(index: int, min_w: float = 150, max_w: float = 600, default_w: float = 450) -> pw.GpuPower:
    return pw.GpuPower(index, f"GPU-{index}", "RTX 4090", min_w, max_w, default_w, default_w)


def test_the_default_sweep_stays_inside_every_gpus_constraints() -> None:
    assert ops.sweep_caps([_gpu(0)]) == [450, 400, 350, 300, 250, 200, 150]
    # Boards differ: start at the lowest default, stop at the highest minimum, which is included off-step.
    assert ops.sweep_caps([_gpu(0, min_w=125, default_w=480), _gpu(1, min_w=170, default_w=450)]) == [
        450,
        400,
        350,
        300,
        250,
        200,
        170,
    ]
    assert ops.sweep_caps([_gpu(0)], caps=(300, 450, 300)) == [450, 300]
    with pytest.raises(Exception, match="at least two caps"):
        ops.sweep_caps([_gpu(0)], caps=(300,))


def _result(sent: float, tokens: list[float]) -> Any:
    from deployctl.probe.load import Result

    return Result(scheduled=sent, sent=sent, first_token=tokens[0], token_times=tokens, end=tokens[-1])


def test_steady_throughput_counts_tokens_inside_the_window_once_every_worker_runs() -> None:
    load = ops.Load(value=2)
    # Worker A starts at 0, worker B at 1 s; window 0-5 s; tokens every 0.5 s, some after the window.
    a = _result(0.0, [0.5 * i for i in range(1, 13)])  # 0.5 .. 6.0
    b = _result(1.0, [1.0 + 0.5 * i for i in range(1, 11)])  # 1.5 .. 6.0
    # From 1 s (both running) to 5 s: A has 1.0..5.0 (9 tokens), B 1.5..5.0 (8 tokens): 17 over 4 s.
    assert ops.steady_tokens_per_s([a, b], load, start=0.0, window_s=5.0) == pytest.approx(17 / 4)
    assert ops.steady_tokens_per_s([a], load, start=0.0, window_s=5.0) is None  # never reached 2 in flight


def test_a_stack_that_runs_the_simulator_is_not_tuned_on_real_gpus(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    info = {"project": "p", "service": "engine", "endpoint": "http://127.0.0.1:1", "simulate": True}
    (stack / "stack.json").write_text(json.dumps({**info, "plan_hash": "x", "load_timeout_s": 60}))
    (stack / "plan.json").write_text("{}")
    result = CliRunner().invoke(cli, ["power", "tune", "--stack-dir", str(stack)])
    assert result.exit_code == 2 and "runs the simulator, not an engine on these GPUs" in result.stderr


def test_a_step_that_would_give_more_caps_than_a_sweep_measures_is_refused_with_the_step_that_works() -> None:
    from deployctl.errors import InputError

    gpus = [_gpu(0, min_w=150, default_w=450)]
    with pytest.raises(
        InputError, match=r"--step 1 W from 450 W down to 150 W gives 302 caps; a sweep measures at most 64"
    ):
        ops.sweep_caps(gpus, (), 1.0)
    assert len(ops.sweep_caps(gpus, (), 5.0)) == 61  # 450, 445, ..., 150
    with pytest.raises(InputError, match="--caps names 65 caps"):
        ops.sweep_caps(gpus, tuple(float(c) for c in range(150, 215)), 50.0)
