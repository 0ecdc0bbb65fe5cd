"""`health` and `bench`: find what to probe (endpoint, API key, plan) the same way, then probe it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployctl.engines import dialects
from deployctl.engines.dialects import Dialect
from deployctl.errors import InputError, NotRunning
from deployctl.http import check_url
from deployctl.plan import Plan
from deployctl.probe.dialect import ENGINE_HINT, Detection, detect
from deployctl.progress import Progress

if TYPE_CHECKING:
    from deployctl.probe.bench import BenchConfig, BenchResult


@dataclass(frozen=True)
class Target:
    endpoint: str
    api_key: str | None
    plan: Plan | None
    stack_dir: Path | None
    engine: str | None = None  # --engine: which engine's API the endpoint speaks, when no plan says
    simulated: bool = False  # the stack runs the protocol simulator


def resolve_target(
    *,
    endpoint: str | None = None,
    stack_dir: Path | None = None,
    spec_path: Path | None = None,
    api_key_env: str | None = None,
    engine: str | None = None,
) -> Target:
    """Give the endpoint, key and plan to probe: flags first, then the stack of --stack-dir or of the spec."""
    from deployctl import engines, spec, stackdir

    if engine is not None:
        engines.get(engine)  # an unknown name is an InputError naming the allowed ones

    directory = stack_dir or spec.load(spec_path).stack_dir
    stack = stackdir.read_stack(directory)
    key = stack.api_key if stack else None
    if endpoint:
        check_url(endpoint, "--endpoint")
    url = (endpoint or (stack.info.endpoint if stack else "")).rstrip("/")
    if not url:
        raise NotRunning(
            f"no stack in {directory} (nothing to check)",
            "pass --endpoint URL or --stack-dir DIR, or run `deployctl up`",
        )
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise InputError(f"--api-key-env: {api_key_env} is not set")
    return Target(
        url,
        key,
        stack.plan if stack else None,
        stack.dir if stack else None,
        engine=engine,
        simulated=bool(stack and stack.info.simulate),
    )


def find_dialect(target: Target) -> Detection:
    """Give the target's API dialect: --engine's, else its plan's engine's, else what the endpoint answers to."""
    from deployctl import engines

    if target.engine is not None:
        return Detection(engines.get(target.engine).dialect, "the --engine flag")
    if target.plan is not None:
        return Detection(dialects.get(target.plan.engine.dialect), "the plan")
    return detect(target.endpoint, target.api_key)


def dialect_of(target: Target) -> Dialect:
    """Give the target's API dialect (find_dialect); NotRunning when the endpoint answers like no engine."""
    found = find_dialect(target)
    if found.dialect is None:
        raise NotRunning(found.why, f"{ENGINE_HINT}, or check the URL")
    return found.dialect


def health(target: Target, *, max_ttft_ms: float, timeout: float) -> Any:
    """Give the health report of the target (a probe.health.HealthReport)."""
    from deployctl.probe import health as probe

    found = find_dialect(target)
    expected = probe.Expected.from_plan(target.plan, found.dialect) if target.plan and found.dialect else None
    report = probe.check(
        target.endpoint, expected, target.api_key, max_ttft_ms=max_ttft_ms, timeout=timeout, dialect=found
    )
    if report.status != "down" and target.plan is not None:
        facts = engine_facts(target.endpoint, target.plan, target.stack_dir, timeout=min(timeout, 5.0))
        if isinstance(facts, str):
            report.checks.append(probe.Check("metrics", False, facts))
            report.status = "degraded"
        else:
            report.metrics = facts.as_dict()
            firing = [v.detail for v in facts.verdicts if v.firing]
            report.checks.append(probe.Check("metrics", not facts.degraded, "; ".join(firing) or _calm(facts)))
            if facts.degraded:
                report.status = "degraded"
    return report


def _calm(facts: Any) -> str:
    kv = "" if facts.kv_cache_usage is None else f"KV cache {facts.kv_cache_usage:.0%}, "
    return f"{kv}{facts.requests_waiting or 0:.0f} waiting, {facts.requests_failed or 0:.0f} failed: no alert"


def thresholds_of(plan: Plan, stack_dir: Path | None) -> Any:
    """Give the alerts' thresholds: those the stack's monitoring was rendered with, else the plan's defaults."""
    from deployctl.monitoring import render, thresholds

    saved = stack_dir / render.THRESHOLDS_FILE if stack_dir else None
    if saved is not None and saved.is_file():
        from deployctl.fsio import read_bounded

        try:
            return render.thresholds_from_json(read_bounded(saved, 1 << 20, "thresholds.json"))
        except (ValueError, TypeError, KeyError):
            pass  # an older or edited file: the plan's own thresholds still judge
    return thresholds.from_plan(plan)


def engine_facts(endpoint: str, plan: Plan, stack_dir: Path | None, *, timeout: float = 5.0) -> Any:
    """Give what the alerts watch on the engine's /metrics (monitoring.facts.EngineFacts), or why it could not be read."""
    from deployctl.monitoring import facts

    return facts.read(endpoint, thresholds_of(plan, stack_dir), timeout)


def bench_config(
    *,
    endpoint: str | None,
    stack_dir: Path | None,
    spec_path: Path | None,
    api_key_env: str | None,
    preset: str | None,
    engine: str | None = None,
    concurrency: str | None,
    rate: str | None,
    requests: int,
    warmup: int,
    prompt_tokens: int | None,
    output_tokens: int | None,
    api: str | None,
    seed: int,
    slo_ttft: float | None,
    slo_itl: float | None,
    slo_e2e: float | None,
    slo_percentile: str,
    cost: float | None,
    currency: str,
    label: str | None = None,
) -> BenchConfig:
    """Give the bench configuration (the flags over the preset's values over the defaults) and its target."""
    from deployctl.load_options import choose_load, parse_loads
    from deployctl.probe import bench as core
    from deployctl.probe.stats import Slo

    p = core.PRESETS.get(preset or "", {})
    load = choose_load(
        preset,
        concurrency=parse_loads(concurrency, "--concurrency") if concurrency else None,
        rate=parse_loads(rate, "--rate") if rate else None,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        defaults={"output_tokens": 64},
    )
    target = resolve_target(
        endpoint=endpoint, stack_dir=stack_dir, spec_path=spec_path, api_key_env=api_key_env, engine=engine
    )
    config = core.BenchConfig(  # every value checked (its __post_init__) before the endpoint is asked anything
        endpoint=target.endpoint,
        mode=load.mode,
        loads=load.loads,
        requests=requests,
        warmup=warmup,
        prompt_tokens=load.prompt_tokens,
        output_tokens=load.output_tokens,
        seed=seed,
        slo=Slo(
            slo_ttft if slo_ttft is not None else p.get("slo_ttft_ms"),
            slo_itl if slo_itl is not None else p.get("slo_itl_ms"),
            slo_e2e,
            slo_percentile,
        ),
        cost=cost,
        currency=currency,
        api_key=target.api_key,
        preset=preset,
        label=label if label is not None else run_label(target),
        model_name=target.plan.served_name if target.plan else None,
    )
    dialect = dialect_of(target)
    if api is None:
        api = dialect.apis[0]
    elif api not in dialect.apis:
        raise InputError(
            f"--api {api} is not a route of this stack's engine (it speaks {dialect.title})",
            f"use --api {' or '.join(dialect.apis)}",
        )
    return dataclasses.replace(config, api=api, dialect=dialect.name)  # type: ignore[arg-type]  # a click.Choice


@dataclass(frozen=True)
class BenchRun:
    """A finished `bench run`: its result, the files written, and the configuration it ran."""

    result: BenchResult
    files: dict[str, Path]
    config: BenchConfig


def bench(*, output_dir: Path, progress: Progress, **flags: Any) -> BenchRun:
    """Give the bench run of `flags` (bench_config's): the output folder checked first, then the sweep, then its files."""
    from deployctl.probe import bench as core

    core.check_output_dir(output_dir)
    config = bench_config(**flags)
    result = core.run(config, progress)
    return BenchRun(result, core.write(result, output_dir), config)


def compare_runs(a: Path, b: Path) -> list[tuple[str, Any, Any, float | None]]:
    """Give rows (metric, A, B, B/A) comparing two bench result files, each checked as it is read."""
    from deployctl.probe import bench as core

    return core.compare_values(core.read(a), core.read(b))


def run_label(target: Target) -> str:
    """Give the name a bench run goes by in `bench compare`: the stack's engine, GPUs and power cap
    (`tgi 2x rtx4090 300 W`), or the endpoint when no stack describes it."""
    plan = target.plan
    if plan is None:
        return target.endpoint
    gpu = plan.gpu_profile or (plan.gpus[0].name if plan.gpus else "GPU")
    words = [plan.engine.kind, f"{plan.num_shard}x {gpu}"]
    if plan.power_limit_watts:
        words.append(f"{plan.power_limit_watts} W")
    if target.simulated:
        words.append("simulated")
    return " ".join(words)
