"""`health` and `bench`: find what to probe (endpoint, API key, plan) the same way, then probe it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployctl.engines import dialects
from deployctl.engines.dialects import Dialect
from deployctl.errors import InputError, NotRunning
from deployctl.http import check_url
from deployctl.plan import Plan


@dataclass(frozen=True)
class Target:
    endpoint: str
    api_key: str | None
    plan: Plan | None
    stack_dir: Path | None
    simulated: bool = False  # the stack runs the protocol simulator


def resolve_target(
    *,
    endpoint: str | None = None,
    stack_dir: Path | None = None,
    spec_path: Path | None = None,
    api_key_env: str | None = None,
) -> Target:
    """Give the endpoint, key and plan to probe: flags first, then the stack of --stack-dir or of the spec."""
    from deployctl import spec, stackdir

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
        url, key, stack.plan if stack else None, stack.dir if stack else None, bool(stack and stack.info.simulate)
    )


def dialect_of(target: Target, api: str | None = None) -> Dialect:
    """Give the API dialect of the target's engine, as its plan records it; for a bare --endpoint, the
    dialect whose default route `api` is (TGI's when none is asked for)."""
    return dialects.get(target.plan.engine.dialect) if target.plan else dialects.for_api(api)


def health(target: Target, *, max_ttft_ms: float, timeout: float) -> Any:
    """Give the health report of the target (a probe.health.HealthReport)."""
    from deployctl.probe import health as probe

    expected = probe.Expected.from_plan(target.plan, dialect_of(target)) if target.plan else None
    return probe.check(
        target.endpoint, expected, target.api_key, max_ttft_ms=max_ttft_ms, timeout=timeout, dialect=dialect_of(target)
    )


def bench_config(
    *,
    endpoint: str | None,
    stack_dir: Path | None,
    spec_path: Path | None,
    api_key_env: str | None,
    preset: str | None,
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
) -> Any:
    """Give the bench configuration (the flags over the preset's values over the defaults) and its target."""
    from deployctl.probe import bench as core
    from deployctl.probe.stats import Slo

    p = core.PRESETS.get(preset or "", {})
    if concurrency and rate:
        raise InputError("give --concurrency or --rate, not both")
    if not concurrency and not rate and "concurrency" not in p:
        raise InputError("give --concurrency 1,2,4 (closed loop) or --rate 1,2,4 (open loop), or --preset")
    mode = "open" if rate else "closed"
    loads = core.parse_loads(rate or concurrency or ",".join(str(c) for c in p["concurrency"]))
    if requests < 1 or warmup < 0:
        raise InputError("--requests must be at least 1 and --warmup at least 0")
    target = resolve_target(endpoint=endpoint, stack_dir=stack_dir, spec_path=spec_path, api_key_env=api_key_env)
    dialect = dialect_of(target, api)
    if api is None:
        api = dialect.apis[0]
    elif api not in dialect.apis:
        raise InputError(
            f"--api {api} is not a route of this stack's engine (it speaks {dialect.title})",
            f"use --api {' or '.join(dialect.apis)}",
        )
    return core.BenchConfig(
        endpoint=target.endpoint,
        mode=mode,  # type: ignore[arg-type]  # closed or open, chosen above
        loads=loads,
        requests=requests,
        warmup=warmup,
        prompt_tokens=prompt_tokens or p.get("prompt_tokens", 256),
        output_tokens=output_tokens or p.get("output_tokens", 64),
        api=api,  # type: ignore[arg-type]  # a click.Choice of generate, chat, completions
        dialect=dialect.name,
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
