"""`plan --compare`: one model on several candidate hosts, honestly: what the engine accepts where, and bounds.

Every performance figure is a bound at the datasheet's peak (planner/bounds.py), printed as one: a
floor on time (`>=`) or a ceiling on a rate (`<=`); real engines are slower. A host whose plan the
engine would refuse, or whose checkpoint its release does not load, is shown as such with the
reason. Measured numbers come from `deployctl bench` and `deployctl bench compare`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deployctl import engines, gpus
from deployctl.engines.base import Engine
from deployctl.errors import DeployctlError, InputError, PlanRefused
from deployctl.models import ModelFacts
from deployctl.planner import bounds, plan
from deployctl.planner.fit import DEFAULT_MAX_TOTAL
from deployctl.spec import DeploymentSpec

DEFAULT_WORKLOAD = (1024, 256)  # tokens in, tokens out: a page of context plus a question, a paragraph back
_HOST = re.compile(r"^(\d{1,2})x([a-z0-9-]+)$")
_WORKLOAD = re.compile(r"^(\d{1,7}):(\d{1,7})$")
# What a row says when there is no plan: the engine refuses it, its release does not load the checkpoint,
# or the model does not split over that many GPUs.
Verdict = Literal["yes", "no: does not fit", "no: does not load", "no: does not split", "guess"]

QUEUEING = (
    "QPS <= the smallest of: compute (n x peak FLOP/s / FLOPs per request); KV (Little's law: the requests the"
    " KV cache holds at once, each decoding `answer` steps at the step floor); TTFT (Poisson arrivals, prefills"
    " one at a time at the prefill floor, mean TTFT of an M/D/1 queue); ITL (the largest batch whose step"
    " floor is within it)"
)


class CompareRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    gpus: int
    gpu: str
    fits: bool
    verdict: Verdict
    why: str | None = None
    weights_per_gpu: int
    kv_tokens: int | None = None
    max_total_tokens: int | None = None
    full_length_requests: int | None = None
    # Bounds: a floor (min) on time, a ceiling (max) on rates, all at datasheet peak.
    decode_floor_ms_min: float | None = None  # one request at the workload's mean context
    prefill_ms_min: float | None = None  # the workload's prompt
    batch: int | None = None  # workload requests the KV cache holds at once (capped at max concurrency)
    decode_tokens_per_s_max: float | None = None
    qps_max: float | None = None
    qps_binding: str | None = None  # which limit gives qps_max
    qps_limits: dict[str, float] = {}
    cost: float | None = None
    cost_per_token_per_s_min: float | None = None


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    engine: str
    engine_release: str
    unverified_engine: str | None = None  # the image's release has no rule: every figure is a guess
    kv_cache_dtype: str
    workload_prompt: int
    workload_answer: int
    slo_ttft_ms: float | None
    slo_itl_ms: float | None
    rows: list[CompareRow]
    notes: list[str]


def parse_workload(text: str | None) -> tuple[int, int]:
    """Give (prompt, answer) tokens from `1024:256`."""
    if text is None:
        return DEFAULT_WORKLOAD
    match = _WORKLOAD.match(text.strip())
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise InputError(f"--workload: {text[:40]!r} is not PROMPT:ANSWER tokens", "e.g. --workload 1024:256")
    return int(match.group(1)), int(match.group(2))


def parse_hosts(text: str) -> list[tuple[int, str]]:
    """Give (count, profile name) for each `NxGPU` in a comma-separated list."""
    out = []
    for part in (p.strip().lower() for p in text.split(",")):
        match = _HOST.match(part)
        if not match or int(match.group(1)) < 1:
            raise InputError(f"--compare: {part[:40]!r} is not COUNTxGPU", "e.g. 1xrtx4090,2xrtx4090,2xa100-80gb")
        out.append((int(match.group(1)), gpus.profile(match.group(2)).name))
    if not out or len(out) > 16:
        raise InputError("--compare: give 1 to 16 hosts")
    return out


def parse_costs(text: str | None) -> dict[str, float]:
    """Give host -> price from `1xrtx4090=18999,2xrtx4090=33998`."""
    costs: dict[str, float] = {}
    for part in (p.strip() for p in (text or "").split(",") if p.strip()):
        host, _, price = part.partition("=")
        try:
            value = float(price)
        except ValueError:
            value = -1.0
        if not 0 < value < 1e12:
            raise InputError(f"--cost: {part[:40]!r} is not HOST=PRICE with a positive price", "e.g. 1xrtx4090=18999")
        (count, name), *_ = parse_hosts(host)
        costs[f"{count}x{name}"] = value
    return costs


def _verdict(exc: DeployctlError) -> Verdict:
    if " does not load in " in exc.message:
        return "no: does not load"
    if " cannot be split over " in exc.message:
        return "no: does not split"
    return "no: does not fit"


def _row(
    spec: DeploymentSpec,
    model: ModelFacts,
    engine: Engine,
    host_spec: tuple[int, str],
    workload: bounds.Workload,
    *,
    cost: float | None,
    kv_dtype: str,
) -> CompareRow:
    count, name = host_spec
    profile = gpus.PROFILES[name]
    host = gpus.host(name, count).model_copy(update={"max_gpus": max(count, profile.max_gpus)})
    rules = engine.memory_rule(spec.image or engine.default_image, unverified=spec.unverified_engine)
    weights = model.shard_weight_bytes(
        count, tied_copy=rules.tied_copy, scales_whole=rules.scales_whole(model.quantization)
    )
    base = {"host": f"{count}x{name}", "gpus": count, "gpu": profile.marketing_name, "weights_per_gpu": weights}
    try:
        asked = spec.model_copy(update={"gpus": count, "gpu_model": name})
        p = plan(asked, model, host, kv_cache_dtype=kv_dtype, engine=engine)
    except (PlanRefused, InputError) as exc:
        why = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
        return CompareRow(**base, fits=False, verdict=_verdict(exc), why=why, cost=cost)
    lim = p.limits
    wanted = spec.limits.max_total_tokens or min(model.context_length, DEFAULT_MAX_TOTAL)
    lowered = (
        f"{rules.title} refuses max_total_tokens={wanted} ({lim.kv_cache_tokens:,} KV tokens):"
        f" planned at {lim.max_total_tokens:,}"
        if lim.max_total_tokens < wanted
        else None
    )
    hw = bounds.Hardware(count, profile.bandwidth_gbs, profile.fp16_tflops)
    tokens = workload.prompt + workload.answer
    batch = min(lim.kv_cache_tokens // tokens, lim.max_concurrent_requests)
    context = workload.mean_context
    step = bounds.step_s(model, weights, hw, batch=max(1, batch), context=context, tied_copy=rules.tied_copy)
    tps = batch / step if batch else 0.0
    q = bounds.qps(model, weights, hw, workload, batch=batch, tied_copy=rules.tied_copy)
    floor = bounds.decode_floor_ms(model, weights, hw, context=context, tied_copy=rules.tied_copy, kv_dtype=kv_dtype)
    return CompareRow(
        **base,
        fits=True,
        verdict="guess" if p.unverified_engine else "yes",
        why=p.unverified_engine or lowered or (None if batch else f"the KV cache holds no {tokens}-token request"),
        kv_tokens=lim.kv_cache_tokens,
        max_total_tokens=lim.max_total_tokens,
        full_length_requests=lim.full_length_requests,
        decode_floor_ms_min=round(floor, 1),
        prefill_ms_min=round(bounds.prefill_ms(model, weights, hw, workload.prompt)),
        batch=batch,
        decode_tokens_per_s_max=round(tps),
        qps_max=round(q.qps, 2),
        qps_binding=q.binding,
        qps_limits={k: round(v, 2) for k, v in q.limits.items()},
        cost=cost,
        cost_per_token_per_s_min=round(cost / tps, 2) if cost and tps else None,
    )


def compare(
    spec: DeploymentSpec,
    model: ModelFacts,
    hosts: list[tuple[int, str]],
    costs: dict[str, float],
    kv_cache_dtype: str = "auto",
    *,
    workload: bounds.Workload | None = None,
) -> Comparison:
    """Give the comparison of `model` under the spec's engine on each (count, profile) host."""
    unknown = set(costs) - {f"{c}x{n}" for c, n in hosts}
    if unknown:
        raise InputError(f"--cost: {', '.join(sorted(unknown))} is not among the compared hosts")
    w = workload or bounds.Workload(*DEFAULT_WORKLOAD)
    engine = engines.get(spec.engine)
    rules = engine.memory_rule(spec.image or engine.default_image, unverified=spec.unverified_engine)
    rows = [_row(spec, model, engine, h, w, cost=costs.get(f"{h[0]}x{h[1]}"), kv_dtype=kv_cache_dtype) for h in hosts]
    notes = [
        f"bounds at datasheet peak for requests of {w.prompt} tokens in, {w.answer} out: `>=` is a floor no engine"
        " goes below, `<=` a ceiling no engine goes above; all-reduces between GPUs (through host memory without"
        " P2P) are not in them",
        f"decode floor: the bytes one decode step reads per GPU (weight shards, the embedding rows looked up, the"
        f" KV of {w.mean_context} tokens) / memory bandwidth; prefill: FLOPs at peak (lm_head on the last token)"
        " or one read of the weights",
        "batch: requests of the workload the engine's KV cache holds at once; decode <= batch / step floor",
        QUEUEING,
        "KV tokens and max_total are the engine's own start-up rule" + (f" ({rules.title})" if rules.title else ""),
        "measured numbers live in `deployctl bench` and `deployctl bench compare`; formulas in docs/planner.md",
    ]
    return Comparison(
        model=model.name,
        engine=spec.engine,
        engine_release=rules.title,
        unverified_engine=rules.guess,
        kv_cache_dtype=kv_cache_dtype,
        workload_prompt=w.prompt,
        workload_answer=w.answer,
        slo_ttft_ms=w.slo_ttft_ms,
        slo_itl_ms=w.slo_itl_ms,
        rows=rows,
        notes=notes,
    )
