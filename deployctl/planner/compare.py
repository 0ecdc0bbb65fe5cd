"""`plan --compare`: one model on several candidate hosts, honestly: what fits, floors and roofline estimates.

A FLOOR is a physical minimum (bytes that must cross the memory bus / bandwidth); an ESTIMATE
is a roofline at the datasheet's peak (real engines reach a fraction of it). Formulas:
docs/planner.md. Measured numbers come from `deployctl bench` and `deployctl bench compare`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from deployctl import engines, gpus
from deployctl.engines.base import Engine
from deployctl.errors import DeployctlError, InputError
from deployctl.models import ModelFacts
from deployctl.planner import memory, plan
from deployctl.spec import DeploymentSpec

TYPICAL_PROMPT = 1024  # tokens: the prompt the estimates assume (a page of context plus a question)
TYPICAL_ANSWER = 256  # tokens generated per request
_HOST = re.compile(r"^(\d{1,2})x([a-z0-9-]+)$")


class CompareRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    gpus: int
    gpu: str
    fits: bool
    why: str | None = None
    weights_per_gpu: int
    kv_tokens: int | None = None
    max_total_tokens: int | None = None
    full_length_requests: int | None = None
    decode_floor_ms: float | None = None
    prefill_ms_estimate: float | None = None
    batch: int | None = None
    decode_tokens_per_s_estimate: float | None = None
    cost: float | None = None
    cost_per_token_per_s: float | None = None


class Comparison(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    engine: str
    kv_cache_dtype: str
    typical_prompt: int
    typical_answer: int
    rows: list[CompareRow]
    notes: list[str]


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


def _prefill_ms(model: ModelFacts, n: int, profile: gpus.GpuProfile, weights_per_gpu: int) -> float:
    tokens = TYPICAL_PROMPT
    attention = 2 * model.num_layers * tokens * tokens * model.num_heads * model.head_dim  # causal QK^T and AV
    flops = 2 * model.active_parameters * tokens + attention
    compute = flops / (n * profile.fp16_tflops * 1e12)
    read = weights_per_gpu / (profile.bandwidth_gbs * 1e9)
    return round(max(compute, read) * 1000, 1)


def _decode(model: ModelFacts, n: int, profile: gpus.GpuProfile, weights_per_gpu: int, batch: int) -> float:
    context = TYPICAL_PROMPT + TYPICAL_ANSWER // 2
    weights = weights_per_gpu
    if model.is_moe:  # a batch touches at most all experts
        share = min(1.0, batch * model.experts_per_token / model.experts)
        weights = weights_per_gpu - int(model.layout.split / n * (1 - share))
    kv = batch * context * memory.kv_bytes_per_token_per_shard(model, n)
    read = (weights + kv) / (profile.bandwidth_gbs * 1e9)
    compute = 2 * model.active_parameters * batch / (n * profile.fp16_tflops * 1e12)
    return round(batch / max(read, compute), 1)


def _row(
    spec: DeploymentSpec,
    model: ModelFacts,
    engine: Engine,
    host_of: tuple[int, str],
    cost: float | None,
    kv_dtype: str,
) -> CompareRow:
    count, name = host_of
    profile = gpus.PROFILES[name]
    host = gpus.host(name, count).model_copy(update={"max_gpus": max(count, profile.max_gpus)})
    rules = engine.memory_rule(spec.image or engine.default_image)
    weights = model.shard_weight_bytes(count, tied_copy=rules.tied_copy)
    base = {"host": f"{count}x{name}", "gpus": count, "gpu": profile.marketing_name, "weights_per_gpu": weights}
    try:
        asked = spec.model_copy(update={"gpus": count, "gpu_model": name})
        p = plan(asked, model, host, kv_cache_dtype=kv_dtype, engine=engine)
    except DeployctlError as exc:
        return CompareRow(**base, fits=False, why=f"{exc.message}; {exc.hint}" if exc.hint else exc.message, cost=cost)
    lim = p.limits
    batch = max(1, min(lim.kv_cache_tokens // (TYPICAL_PROMPT + TYPICAL_ANSWER), lim.max_concurrent_requests))
    tps = _decode(model, count, profile, weights, batch)
    return CompareRow(
        **base,
        fits=True,
        kv_tokens=lim.kv_cache_tokens,
        max_total_tokens=lim.max_total_tokens,
        full_length_requests=lim.full_length_requests,
        decode_floor_ms=p.decode_floor_ms,
        prefill_ms_estimate=_prefill_ms(model, count, profile, weights),
        batch=batch,
        decode_tokens_per_s_estimate=tps,
        cost=cost,
        cost_per_token_per_s=round(cost / tps, 2) if cost else None,
    )


def compare(
    spec: DeploymentSpec,
    model: ModelFacts,
    hosts: list[tuple[int, str]],
    costs: dict[str, float],
    kv_cache_dtype: str = "auto",
) -> Comparison:
    """Give the comparison of `model` under the spec's engine on each (count, profile) host."""
    unknown = set(costs) - {f"{c}x{n}" for c, n in hosts}
    if unknown:
        raise InputError(f"--cost: {', '.join(sorted(unknown))} is not among the compared hosts")
    engine = engines.get(spec.engine)
    rows = [_row(spec, model, engine, (c, n), costs.get(f"{c}x{n}"), kv_cache_dtype) for c, n in hosts]
    notes = [
        "decode FLOOR: bytes each GPU reads per token (its weights + the KV of one full-length request) / memory"
        " bandwidth; no engine goes below it, and all-reduces over PCIe add to it",
        f"ESTIMATEs are rooflines at datasheet peak (prompt {TYPICAL_PROMPT} tokens, answer {TYPICAL_ANSWER}):"
        " real engines reach a fraction; formulas in docs/planner.md",
        "measured numbers live in `deployctl bench` and `deployctl bench compare`",
    ]
    return Comparison(
        model=model.name,
        engine=spec.engine,
        kv_cache_dtype=kv_cache_dtype,
        typical_prompt=TYPICAL_PROMPT,
        typical_answer=TYPICAL_ANSWER,
        rows=rows,
        notes=notes,
    )
