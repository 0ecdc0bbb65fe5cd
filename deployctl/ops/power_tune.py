"""`deployctl power tune`: step the GPUs' power cap down under a fixed load, measure, keep the lowest that holds.

For each cap: set it on every GPU of the stack (read back), let it settle, bench a fixed window at
a fixed load, and read throughput, latency percentiles, average board power from NVML's energy
counter over that window, J/token, peak temperature and clocks. The original caps go back on
every way out (success, error, Ctrl-C, SIGTERM, a failed bench, a GPU that stops answering),
unless `--apply` keeps the chosen one.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from deployctl import failpoints
from deployctl.errors import DeployctlError, InputError
from deployctl.gpus.gpu import Reading
from deployctl.hardware.power import GpuPower, PowerControl, PowerError
from deployctl.interrupt import Guard, held
from deployctl.load_options import MAX_CAPS
from deployctl.probe import load as loadgen
from deployctl.probe.stats import LevelStats, Slo, summarize

Report = Callable[[str], None]
SAMPLE_EVERY_S = 0.5  # temperature and clocks during the window; energy comes from the counter, not samples
FAILED_FRACTION = 0.05  # a window where more requests fail than this is a failed bench, not a measurement


@dataclass(frozen=True)
class Load:
    """The fixed load every cap is measured under: a concurrency (closed loop) or a rate (open loop)."""

    mode: Literal["closed", "open"] = "closed"
    value: float = 8
    prompt_tokens: int = 256
    output_tokens: int = 128
    api: loadgen.Api = "generate"
    seed: int = 42


@dataclass(frozen=True)
class TuneConfig:
    endpoint: str
    load: Load = field(default_factory=Load)
    api_key: str | None = None
    dialect: str = "tgi"  # the engine's API, by name (the stack's plan says which)
    caps: tuple[float, ...] = ()  # explicit caps; default: the board default down to its minimum
    step_w: float = 50.0
    settle_s: float = 5.0
    window_s: float = 20.0
    min_throughput: float = 0.95
    slo: Slo = field(default_factory=Slo)
    apply: bool = False


@dataclass
class CapRow:
    """One cap as measured (every figure simulated when the simulator stands in for the GPUs)."""

    cap_w: float
    tokens_per_s: float
    throughput_ratio: float
    requests: int
    completed: int
    ttft_ms_p50: float | None
    ttft_ms_p90: float | None
    ttft_ms_p99: float | None
    itl_ms_p50: float | None
    itl_ms_p90: float | None
    itl_ms_p99: float | None
    power_w: float
    joules_per_token: float | None
    peak_temperature_c: float | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    meets_slo: bool | None
    qualifies: bool
    simulated: bool
    windows: int = 1  # 2 when it fell short once and was measured again


@dataclass
class TuneResult:
    simulated: bool
    gpus: list[GpuPower]
    caps: list[float]
    load: Load
    min_throughput: float
    rows: list[CapRow] = field(default_factory=list)
    chosen_w: float | None = None
    stopped_early: bool = False
    applied: bool = False
    restored: bool = False
    unit_path: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    estimated_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the sweep it would run ----------------------------------------------------------------------------
def sweep_caps(gpus: list[GpuPower], caps: tuple[float, ...] = (), step_w: float = 50.0) -> list[float]:
    """Give the caps to measure, highest first, inside every GPU's NVML constraints (or an InputError)."""
    if not gpus:
        raise InputError("no GPUs to tune", "run `deployctl gpus`")
    lo, hi = max(g.min_w for g in gpus), min(g.max_w for g in gpus)
    if len(caps) > MAX_CAPS:
        raise InputError(f"--caps names {len(caps)} caps; a sweep measures at most {MAX_CAPS}")
    if caps:
        outside = [c for c in caps if not lo <= c <= hi]
        if outside:
            raise InputError(
                f"--caps {', '.join(f'{c:g}' for c in outside)} W: outside the allowed range of {lo:g}-{hi:g} W",
                "every cap must suit every GPU of the stack",
            )
        out = sorted(set(caps), reverse=True)
    else:
        if step_w <= 0:
            raise InputError("--step must be more than 0 W")
        start = min(min(g.default_w for g in gpus), hi)
        count = math.floor((start - lo) / step_w) + 2 if math.isfinite(step_w) else 0
        if not math.isfinite(step_w) or count > MAX_CAPS:
            raise InputError(
                f"--step {step_w:g} W from {start:g} W down to {lo:g} W gives {count:,} caps; a sweep measures at most {MAX_CAPS}",
                f"use --step {math.ceil((start - lo) / (MAX_CAPS - 2)):g} or more, or name them with --caps",
            )
        out = [start - i * step_w for i in range(int((start - lo) // step_w) + 1)]
        if out[-1] - lo >= 1:
            out.append(lo)  # down to the board's minimum, even off the step
    if len(out) < 2:
        raise InputError("a sweep needs at least two caps: the first is the reference")
    return out


def estimate_s(config: TuneConfig, caps: list[float]) -> float:
    """Give about how long the sweep takes: every cap, and the second window of the two that stop it.

    It is shorter when it stops early; longer when caps above the knee fall short once by chance.
    """
    return len(caps) * (config.settle_s + config.window_s) + 2 * config.window_s


# -- measuring one cap --------------------------------------------------------------------------------
class Sampler:
    """Read temperature and clocks every SAMPLE_EVERY_S in a thread while a window runs."""

    def __init__(self, control: PowerControl, every_s: float = SAMPLE_EVERY_S) -> None:
        self.control = control
        self.every_s = every_s
        self.samples: list[tuple[float, Reading]] = []  # (perf_counter, reading)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.perf_counter()
                self.samples += [(now, r) for r in self.control.readings()]
            except BaseException as exc:  # handed to the caller's thread in stop()
                self.error = exc
                return
            self._stop.wait(self.every_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _energy_j(readings: list[Reading]) -> float:
    return sum(r.energy_mj for r in readings) / 1000


def _median(values: list[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median_low(present) if present else None


def measure(control: PowerControl, config: TuneConfig, cap_w: float) -> tuple[LevelStats, dict[str, Any]]:
    """Bench one window at the fixed load; give its stats and what the GPUs' counters say over that window."""
    ld = config.load
    workload = loadgen.Workload(
        endpoint=config.endpoint,
        prompt_tokens=ld.prompt_tokens,
        output_tokens=ld.output_tokens,
        api=ld.api,
        seed=ld.seed,
        api_key=config.api_key,
        dialect=config.dialect,
    )
    start: dict[str, float] = {}

    def at_start(t: float) -> None:
        start["load"] = t
        start["t"], start["j"] = time.perf_counter(), _energy_j(control.readings())
        failpoints.hit("power-tune-load")  # the load runs (tests interrupt the bench here)

    with Sampler(control) as sampler:
        if ld.mode == "closed":
            run = loadgen.closed_loop(workload, int(ld.value), 1_000_000, seconds=config.window_s, at_start=at_start)
        else:
            count = max(1, math.ceil(ld.value * config.window_s))
            run = loadgen.open_loop(workload, ld.value, count, at_start=at_start)
        results, span, _ = asyncio.run(run)
        end = control.readings()
        elapsed = time.perf_counter() - start["t"]
    if sampler.error is not None:
        raise sampler.error
    stats = summarize(ld.mode, ld.value, results, span, config.slo)
    joules = _energy_j(end) - start["j"]
    tokens = sum(r.output_tokens for r in results)
    steady = steady_tokens_per_s(results, ld, start["load"], config.window_s)
    window = [r for t, r in sampler.samples if t >= start["t"]]  # clocks under load, not before the window
    temps = [r.temperature_c for r in [*window, *end] if r.temperature_c is not None]
    return stats, {
        "tokens_per_s": round(steady if steady is not None else stats.output_tokens_per_s, 2),
        "power_w": round(joules / elapsed, 1) if elapsed > 0 else 0.0,
        "joules_per_token": round(joules / tokens, 4) if tokens else None,
        "peak_temperature_c": max(temps) if temps else None,
        "sm_clock_mhz": _median([r.sm_clock_mhz for r in window]),
        "mem_clock_mhz": _median([r.mem_clock_mhz for r in window]),
    }


def steady_tokens_per_s(results: list[loadgen.Result], ld: Load, start: float, window_s: float) -> float | None:
    """Give tokens/s counted inside the window once the fixed load is reached (None when too short to tell).

    Counting tokens by their arrival, not whole requests, keeps a window's last requests (which finish
    after it) and the workers' staggered start from moving the figure by a request's length.
    """
    end = start + window_s
    begin = start
    if ld.mode == "closed":
        sends = sorted(r.sent for r in results)
        if len(sends) < ld.value:
            return None
        begin = max(start, sends[int(ld.value) - 1])  # every worker has a request in flight from here
    if end - begin < window_s / 2:
        return None
    count = sum(1 for r in results for t in r.token_times if begin <= t <= end)
    return count / (end - begin)


Measure = Callable[[PowerControl, TuneConfig, float], tuple[LevelStats, dict[str, Any]]]


def _check_bench(stats: LevelStats, cap_w: float) -> None:
    failed = stats.requests - stats.completed
    if stats.completed == 0 or failed > FAILED_FRACTION * stats.requests:
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(stats.errors.items())) or "no request completed"
        raise DeployctlError(
            f"the bench at {cap_w:g} W failed: {failed} of {stats.requests} requests did not complete ({errors})",
            "check the stack (deployctl status, deployctl logs); the original caps were put back",
        )


# -- the sweep ---------------------------------------------------------------------------------------
def _restore(control: PowerControl, report: Report) -> list[str]:
    # Ctrl-C and SIGTERM wait until the caps are back and said so (a second Ctrl-C must not cut that short).
    with held():
        problems = control.restore()
        for p in problems:
            report(f"NOT RESTORED: {p}")
    return problems


def sweep(
    control: PowerControl,
    config: TuneConfig,
    *,
    report: Report = lambda line: None,
    measure_one: Measure = measure,
    sleep: Callable[[float], None] = time.sleep,
) -> TuneResult:
    """Run the sweep and choose; give the table. The original caps are back afterwards unless config.apply."""
    gpus = control.gpus()
    caps = sweep_caps(gpus, config.caps, config.step_w)
    control.check()  # refuses (no root, not supported, no energy counter) before anything changes
    tag = "simulated: " if control.simulated else ""
    result = TuneResult(control.simulated, gpus, caps, config.load, config.min_throughput)
    kept = False
    try:
        with Guard().installed():  # SIGTERM interrupts like Ctrl-C, so the caps go back
            below = 0
            for cap in caps:
                row = _measure_cap(control, config, cap, result, report, measure_one, sleep)
                below = 0 if row.qualifies else below + 1
                if below == 2 and cap != caps[-1]:
                    result.stopped_early = True
                    report(f"{tag}stopping: two caps in a row fell short")
                    break
            qualifying = [r.cap_w for r in result.rows if r.qualifies]
            result.chosen_w = min(qualifying) if qualifying else None
            if config.apply and result.chosen_w is not None:
                control.set_limit(result.chosen_w)
                control.keep()
                kept = result.applied = True
    finally:
        if not kept:
            problems = _restore(control, report)
            result.restored = not problems
            if problems:
                raise PowerError(
                    "the original power limits could not all be put back: " + "; ".join(problems),
                    "run `sudo deployctl power reset` once the GPUs answer",
                )
    return result


def _measure_cap(
    control: PowerControl,
    config: TuneConfig,
    cap: float,
    result: TuneResult,
    report: Report,
    measure_one: Measure,
    sleep: Callable[[float], None],
) -> CapRow:
    """Set, settle and measure one cap; a cap that falls short gets a second window, and the better one counts."""
    tag = "simulated: " if control.simulated else ""
    report(f"{tag}{cap:g} W: setting on {len(result.gpus)} GPU(s), settling {config.settle_s:g} s")
    control.set_limit(cap)
    sleep(config.settle_s)
    row: CapRow | None = None
    for attempt in (1, 2):
        again = " again (it fell short)" if attempt == 2 else ""
        report(f"{tag}{cap:g} W: benching {config.window_s:g} s{again}")
        stats, power = measure_one(control, config, cap)
        _check_bench(stats, cap)
        candidate = _row(cap, stats, power, control.simulated, windows=attempt)
        _judge([*result.rows, candidate], config.min_throughput)
        if row is None or (candidate.qualifies, candidate.tokens_per_s) > (row.qualifies, row.tokens_per_s):
            row = candidate
        if row.qualifies:
            break
    assert row is not None
    result.rows.append(row)
    _judge(result.rows, config.min_throughput)
    report(
        f"{tag}{cap:g} W: {row.tokens_per_s:.1f} tok/s ({row.throughput_ratio:.0%} of the fastest), {row.power_w:g} W"
    )
    return row


def _judge(rows: list[CapRow], min_throughput: float) -> None:
    """Set each row's ratio and verdict against the fastest window: a cap cannot make a GPU faster, so a
    faster window at a lower cap means the first one was slowed by something else."""
    fastest = max(r.tokens_per_s for r in rows)
    for r in rows:
        r.throughput_ratio = round(r.tokens_per_s / fastest, 4) if fastest else 0.0
        r.qualifies = r.throughput_ratio >= min_throughput and r.meets_slo is not False


def _row(cap: float, stats: LevelStats, power: dict[str, Any], simulated: bool, windows: int) -> CapRow:
    return CapRow(
        cap_w=cap,
        throughput_ratio=0.0,
        qualifies=False,
        windows=windows,
        requests=stats.requests,
        completed=stats.completed,
        ttft_ms_p50=stats.ttft_ms.get("p50"),
        ttft_ms_p90=stats.ttft_ms.get("p90"),
        ttft_ms_p99=stats.ttft_ms.get("p99"),
        itl_ms_p50=stats.itl_ms.get("p50"),
        itl_ms_p90=stats.itl_ms.get("p90"),
        itl_ms_p99=stats.itl_ms.get("p99"),
        meets_slo=stats.meets_slo,
        simulated=simulated,
        **power,
    )


# -- the report's picture ------------------------------------------------------------------------------
def plot(result: TuneResult, png: Path) -> None:
    """Draw throughput and J/token against the cap, the chosen cap marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.cap_w for r in result.rows]
    fig, left = plt.subplots(figsize=(8, 4.8))
    left.plot(xs, [r.tokens_per_s for r in result.rows], "o-", color="tab:blue", label="tokens/s")
    if result.rows:
        floor = max(r.tokens_per_s for r in result.rows) * result.min_throughput
        left.axhline(
            floor, color="tab:blue", linestyle=":", linewidth=1, label=f"{result.min_throughput:.0%} of fastest"
        )
    left.set_xlabel("power cap per GPU (W)")
    left.set_ylabel("output tokens/s")
    left.set_ylim(bottom=0)
    left.invert_xaxis()
    right = left.twinx()
    right.plot(xs, [r.joules_per_token or float("nan") for r in result.rows], "s--", color="tab:red", label="J/token")
    right.set_ylabel("joules per generated token")
    right.set_ylim(bottom=0)
    if result.chosen_w is not None:
        left.axvline(result.chosen_w, color="green", linewidth=1.5, label=f"chosen {result.chosen_w:g} W")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(lines, [str(ln.get_label()) for ln in lines], loc="lower left")
    kind = "SIMULATED (the simulator's power model, not a card)" if result.simulated else "measured"
    fig.suptitle(f"power tune, {kind}: {result.load.mode} load {result.load.value:g}")
    left.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write(result: TuneResult, out_dir: Path) -> dict[str, str]:
    """Write tune.json and tune.png; give their paths."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {"json": out_dir / "tune.json", "png": out_dir / "tune.png"}
        plot(result, paths["png"])
        result.files = {k: str(v) for k, v in paths.items()}
        paths["json"].write_text(json.dumps(result.as_dict(), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise DeployctlError(f"cannot write the tune report in {out_dir}: {exc.strerror}") from None
    return result.files


# -- the command ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TuneRequest:
    """What `deployctl power tune` was asked: the sweep, where the stack is, and what to do with the answer."""

    config: TuneConfig
    stack_dir: Path
    simulate: bool = False
    gpu_refs: tuple[str, ...] = ()
    dry_run: bool = False
    persist: bool = False
    unit_dir: Path | None = None
    state_file: Path | None = None
    output_dir: Path = Path("power-tune")
    api_key_env: str | None = None


def _target(req: TuneRequest) -> tuple[TuneConfig, list[str]]:
    """Give the config with the stack's endpoint, API key and dialect filled in, and the UUIDs of the stack's GPUs."""
    from deployctl.ops import probing
    from deployctl.stackdir import StackInfo

    recorded = (req.stack_dir / "stack.json").is_file()
    if recorded and StackInfo.read(req.stack_dir).simulate and not req.simulate:
        raise InputError(
            f"the stack in {req.stack_dir} runs the simulator, not an engine on these GPUs",
            "pass --simulate to rehearse the sweep against it",
        )
    if not req.config.endpoint and not recorded and req.dry_run and not req.simulate:
        return req.config, []  # a dry run on real GPUs benches nothing: no endpoint needed
    target = probing.resolve_target(
        endpoint=req.config.endpoint or None, stack_dir=req.stack_dir, api_key_env=req.api_key_env
    )
    plan = target.plan
    uuids = [g.uuid for g in plan.gpus] if plan and plan.gpu_profile is None else []
    return replace(
        req.config, endpoint=target.endpoint, api_key=target.api_key, dialect=probing.dialect_of(target).name
    ), uuids


def run(req: TuneRequest, report: Report = lambda line: None) -> TuneResult:
    """Tune (or, with dry_run, say what the sweep would be); give the result, its files written."""
    if req.persist and not req.config.apply:
        raise InputError("--persist goes with --apply", "--apply keeps the chosen cap; --persist also sets it at boot")
    if req.persist and req.simulate:
        raise InputError("--persist with --simulate: a simulated cap cannot be set at boot")
    config, uuids = _target(req)
    if req.simulate:
        from deployctl.hardware.simulated import SimulatedControl

        return _run(SimulatedControl(config.endpoint, config.api_key), config, req, report)
    from deployctl.hardware import inventory, nvml
    from deployctl.hardware import power as pw

    with nvml.session(inventory.NVML_LIB) as session:
        if req.gpu_refs:
            uuids = [g.uuid for g in pw.select(session.gpus(), req.gpu_refs)]
        control = pw.NvmlControl(session, uuids, req.state_file or pw.state_path())
        return _run(control, config, req, report)


def _run(control: PowerControl, config: TuneConfig, req: TuneRequest, report: Report) -> TuneResult:
    if req.dry_run:
        gpus = control.gpus()
        caps = sweep_caps(gpus, config.caps, config.step_w)
        return TuneResult(
            control.simulated,
            gpus,
            caps,
            config.load,
            config.min_throughput,
            dry_run=True,
            estimated_s=estimate_s(config, caps),
        )
    result = sweep(control, config, report=report)
    if req.persist and result.applied and result.chosen_w is not None:
        from deployctl.hardware import persist

        unit = persist.render_unit([persist.UnitLimit(g.uuid, round(result.chosen_w)) for g in result.gpus])
        result.unit_path = str(persist.install(unit, req.unit_dir or persist.UNIT_DIR))
    write(result, req.output_dir)
    return result


def tune(
    *,
    stack_dir: Path | None,
    endpoint: str | None,
    simulate: bool,
    preset: str | None,
    concurrency: int | None,
    rate: float | None,
    prompt_tokens: int | None,
    output_tokens: int | None,
    caps: str | None,
    step: float,
    settle: float,
    window: float,
    min_throughput: float,
    slo_ttft: float | None,
    slo_itl: float | None,
    apply: bool,
    persist: bool,
    unit_dir: Path | None,
    api_key_env: str | None,
    output_dir: Path,
    gpu_refs: tuple[str, ...],
    state_file: Path | None,
    dry_run: bool,
    report: Report = lambda line: None,
) -> TuneResult:
    """Give `power tune`'s result for its flags (run's): the load and caps merged and checked, the stack found."""
    from deployctl.load_options import choose_load, parse_loads

    # One level: the flag, else the preset's highest concurrency, else 8 requests in flight.
    chosen = choose_load(
        preset,
        concurrency=[concurrency] if concurrency is not None else None,
        rate=[rate] if rate is not None else None,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        defaults={"concurrency": [8], "output_tokens": 128},
    )
    load = Load(
        mode=chosen.mode,
        value=max(chosen.loads),
        prompt_tokens=chosen.prompt_tokens,
        output_tokens=chosen.output_tokens,
    )
    if stack_dir is None:
        from deployctl import spec

        stack_dir = spec.load(None).stack_dir
    request = TuneRequest(
        config=TuneConfig(
            endpoint=endpoint or "",
            load=load,
            caps=tuple(parse_loads(caps, "--caps", "caps")) if caps else (),
            step_w=step,
            settle_s=settle,
            window_s=window,
            min_throughput=min_throughput,
            slo=Slo(ttft_ms=slo_ttft, itl_ms=slo_itl),
            apply=apply,
        ),
        stack_dir=stack_dir,
        simulate=simulate,
        gpu_refs=gpu_refs,
        dry_run=dry_run,
        persist=persist,
        unit_dir=unit_dir,
        state_file=state_file,
        output_dir=output_dir,
        api_key_env=api_key_env,
    )
    return run(request, report)
