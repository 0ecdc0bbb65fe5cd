"""Plan a deployment: per-GPU memory, limits that fit, engine arguments, or an honest refusal."""

from __future__ import annotations

from dataclasses import dataclass

from deployctl import __version__, engines
from deployctl.engines.base import EngineInputs
from deployctl.errors import InputError, PlanRefused
from deployctl.hardware.gpu import Gpu, Host
from deployctl.hardware.profiles import PROFILES, for_name
from deployctl.models import ModelFacts
from deployctl.planner import memory
from deployctl.planner.memory import gib
from deployctl.planner.types import ChosenLimits, GpuBudget, Plan
from deployctl.spec import DeploymentSpec, Limits

__all__ = ["Plan", "plan"]

DEFAULT_MAX_TOTAL = 8192
MIN_MAX_TOTAL = 1024
DEFAULT_CONCURRENCY = 128  # TGI's own default
STEP = 256


@dataclass(frozen=True)
class _Fit:
    limits: ChosenLimits
    budgets: list[GpuBudget]


def _select(spec: DeploymentSpec, host: Host) -> list[Gpu]:
    where = f"the {host.profile} profile" if host.profile else "this host"
    if isinstance(spec.gpus, int):
        limit = host.max_gpus if host.profile else len(host.gpus)
        if spec.gpus > limit:
            raise InputError(
                f"gpus: {spec.gpus} but {where} has {limit} GPU{'s' if limit != 1 else ''}",
                f"use --gpus {limit} or fewer",
            )
        return host.gpus[: spec.gpus]
    chosen = []
    for ref in spec.gpus:
        match = [g for g in host.gpus if (isinstance(ref, int) and g.index == ref) or g.uuid == ref]
        if not match:
            known = ", ".join(f"{g.index}" for g in host.gpus) or "none"
            raise InputError(f"gpus: {ref!r} is not a GPU of {where}", f"GPUs here: {known}")
        chosen.append(match[0])
    return chosen


def _budgets(model: ModelFacts, gpus: list[Gpu], prefill_tokens: int) -> list[GpuBudget]:
    n = len(gpus)
    weights = memory.shard_weight_bytes(model, n)
    prefill = memory.prefill_bytes_per_token(model, n) * prefill_tokens
    per_token = memory.kv_bytes_per_token_per_shard(model, n)
    out = []
    for g in gpus:
        others = g.memory_used if g.memory_used > memory.IDLE_USE else 0
        reserve = memory.runtime_reserve(g.memory_total, n)
        left = g.memory_total - others - reserve - weights - prefill
        tokens = max(0, left) // per_token
        out.append(
            GpuBudget(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                total=g.memory_total,
                used_by_others=others,
                runtime_reserve=reserve,
                weights=weights,
                prefill_reserve=prefill,
                kv_cache=tokens * per_token,
                kv_tokens=tokens,
            )
        )
    return out


def _limits_for(total: int, spec: DeploymentSpec, concurrency: int) -> tuple[int, int, int]:
    lim = spec.limits
    max_input = lim.max_input_tokens or (total - 1024 if total > 2048 else total // 2)
    prefill = lim.max_batch_prefill_tokens or max_input + 50  # TGI's own default
    return max_input, total, prefill


def _try(model: ModelFacts, gpus: list[Gpu], spec: DeploymentSpec, total: int) -> _Fit | None:
    """Give the fit at max_total_tokens=total, or None when one request of that length does not fit."""
    max_input, total, prefill = _limits_for(total, spec, DEFAULT_CONCURRENCY)
    if max_input >= total or prefill < max_input:
        return None
    budgets = _budgets(model, gpus, prefill)
    kv_tokens = min(b.kv_tokens for b in budgets)
    if kv_tokens < total:
        return None
    limits = ChosenLimits(
        max_input_tokens=max_input,
        max_total_tokens=total,
        max_batch_prefill_tokens=prefill,
        max_concurrent_requests=spec.limits.max_concurrent_requests or DEFAULT_CONCURRENCY,
        kv_cache_tokens=kv_tokens,
    )
    return _Fit(limits, budgets)


def _largest_fit(model: ModelFacts, gpus: list[Gpu], spec: DeploymentSpec, ceiling: int) -> _Fit | None:
    total = ceiling - ceiling % STEP if ceiling > STEP else ceiling
    while total >= MIN_MAX_TOTAL:
        fit = _try(model, gpus, spec, total)
        if fit:
            return fit
        total -= STEP
    return None


def _profile_gpus(template: Gpu, count: int) -> list[Gpu]:
    return [
        template.model_copy(update={"index": i, "uuid": f"{template.uuid}#{i}", "memory_used": 0}) for i in range(count)
    ]


def _what_would_fit(model: ModelFacts, gpus: list[Gpu], host: Host, spec: DeploymentSpec, wanted: int) -> str:
    """Give the sentence a refusal ends with: more GPUs, a shorter context, or a smaller model."""
    n = len(gpus)
    ways = []
    # A shorter context also needs shorter inputs: suggest with the input limits left to the planner.
    relaxed = spec.model_copy(update={"limits": Limits(max_concurrent_requests=spec.limits.max_concurrent_requests)})
    shorter = _largest_fit(model, gpus, relaxed, wanted - STEP) if wanted > MIN_MAX_TOTAL else None
    if shorter:
        s = shorter.limits
        ways.append(
            f"max_total_tokens {s.max_total_tokens} or less fits on {n} GPU{'s' if n > 1 else ''}"
            f" (with max_input_tokens {s.max_input_tokens})"
        )
    limit = host.max_gpus
    for more in range(n + 1, limit + 1):
        if model.num_heads % more:
            continue
        bigger = _profile_gpus(gpus[0], more)
        fit = _try(model, bigger, spec, wanted) or _largest_fit(model, bigger, spec, wanted)
        if fit:
            ways.append(f"{more} GPUs fit it (use --gpus {more}, max_total_tokens {fit.limits.max_total_tokens})")
            break
    if not ways:
        usable = sum(
            g.memory_total - memory.runtime_reserve(g.memory_total, limit) for g in _profile_gpus(gpus[0], limit)
        )
        # Keep a quarter for activations and KV cache; 4-bit GPTQ weighs ~0.52 bytes a parameter.
        params = usable * 0.75 / 0.52 / 1e9
        ways.append(f"a smaller model: about {params:.0f}B parameters at 4 bit fit on {limit} x {gpus[0].name}")
    return "; ".join(ways)


def _why(spec: DeploymentSpec, model: ModelFacts, limits: ChosenLimits, shrunk: bool) -> list[str]:
    reasons = []
    if spec.limits.max_total_tokens:
        reasons.append(f"max_total_tokens {limits.max_total_tokens}: from the spec")
    elif shrunk:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the largest that leaves the KV cache room for one full request"
        )
    else:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the model's context ({model.context_length}) capped at {DEFAULT_MAX_TOTAL}"
        )
    src = "from the spec" if spec.limits.max_input_tokens else "max_total_tokens minus room for the answer"
    reasons.append(f"max_input_tokens {limits.max_input_tokens}: {src}")
    src = "from the spec" if spec.limits.max_batch_prefill_tokens else "max_input_tokens + 50, TGI's rule"
    reasons.append(f"max_batch_prefill_tokens {limits.max_batch_prefill_tokens}: {src}")
    src = "from the spec" if spec.limits.max_concurrent_requests else "TGI's default; more wait in its queue"
    reasons.append(f"max_concurrent_requests {limits.max_concurrent_requests}: {src}")
    reasons.append(
        f"KV cache: {limits.kv_cache_tokens} tokens, {limits.full_length_requests} request(s) of full length at once"
    )
    return reasons


def plan(spec: DeploymentSpec, model: ModelFacts, host: Host, simulate: bool = False) -> Plan:
    """Give the plan for serving `model` on `host` as `spec` asks, or raise PlanRefused saying what would fit."""
    gpus = _select(spec, host)
    n = len(gpus)
    if model.num_heads % n:
        raise InputError(
            f"{model.name}: {model.num_heads} attention heads cannot be split over {n} GPUs", "use 1, 2 or 4 GPUs"
        )
    wanted = spec.limits.max_total_tokens or min(model.context_length, DEFAULT_MAX_TOTAL)
    if spec.limits.max_total_tokens and wanted > model.context_length:
        raise InputError(
            f"limits.max_total_tokens: {wanted} is beyond the model's context of {model.context_length} tokens"
        )
    fit = _try(model, gpus, spec, wanted)
    shrunk = False
    if fit is None and not spec.limits.max_total_tokens:
        fit = _largest_fit(model, gpus, spec, wanted)
        shrunk = fit is not None
    if fit is None:
        budget = _budgets(model, gpus, _limits_for(wanted, spec, 0)[2])[0]
        what = (
            f"weights {gib(budget.weights)} per GPU"
            if budget.weights + budget.runtime_reserve > budget.total - budget.used_by_others
            else f"{gib(budget.weights)} of weights per GPU leave room for {budget.kv_tokens} KV tokens, {wanted} needed"
        )
        raise PlanRefused(
            f"{model.name} does not fit {n} x {gpus[0].name} ({gib(gpus[0].memory_total)} each): {what}",
            "what would fit: " + _what_would_fit(model, gpus, host, spec, wanted),
        )
    return _assemble(spec, model, host, gpus, fit, shrunk)


def _assemble(spec: DeploymentSpec, model: ModelFacts, host: Host, gpus: list[Gpu], fit: _Fit, shrunk: bool) -> Plan:
    n = len(gpus)
    warnings = []
    limits = fit.limits
    if limits.full_length_requests < 2:
        warnings.append(
            f"the KV cache holds {limits.kv_cache_tokens} tokens: one request of full length at a time; "
            "shorter requests batch better"
        )
    others = max(b.used_by_others for b in fit.budgets)
    fraction = None
    if others:
        total = min(b.total for b in fit.budgets)
        fraction = int((total - others) / total * 100) / 100
        warnings.append(
            f"another process holds {gib(others)} on a chosen GPU: the engine is limited to {fraction:.2f} of memory"
        )
    if n > 1 and not host.p2p:
        warnings.append("no peer-to-peer between the GPUs: NCCL goes through host memory (NCCL_P2P_DISABLE=1)")
    if model.weight_bytes_source == "estimate" and model.path is not None:
        warnings.append("no *.safetensors found: weights estimated from config.json")
    if model.quantization.method == "none" and spec.model.quantize != "none":
        warnings.append(f"config.json has no quantization config but the spec says {spec.model.quantize}")
    quantize = spec.model.quantize if model.quantization.method == "none" else model.quantization.method
    if spec.model.quantize == "none":
        quantize = "none"
    served = spec.model.served_name or model.name
    profile = host.profile or (p.name if (p := for_name(gpus[0].name)) else None)
    bandwidth = PROFILES[profile].bandwidth_gbs if profile else None
    floor = None
    if bandwidth:
        floor = round(fit.budgets[0].weights / (bandwidth * 1e9) * 1000, 1)
    chosen = engines.get(spec.engine)
    engine = chosen.configure(
        EngineInputs(
            image=spec.image or chosen.default_image,
            served_name=served,
            quantize=quantize,
            num_shard=n,
            limits=limits,
            p2p=host.p2p,
            memory_fraction=fraction,
            mount_model=model.path is not None,
        )
    )
    device_ids = [str(g.index) if g.source == "profile" else g.uuid for g in gpus]
    return Plan(
        deployctl_version=__version__,
        name=spec.name,
        model=model,
        model_id=chosen.model_id(served),
        served_name=served,
        revision=spec.model.revision,
        gpu_profile=host.profile,
        num_shard=n,
        device_ids=device_ids,
        p2p=host.p2p,
        gpus=fit.budgets,
        limits=limits,
        engine=engine,
        bind=spec.serve.bind,
        port=spec.serve.port,
        api_key=bool(spec.serve.api_key_env or spec.serve.api_key_file),
        power_limit_watts=spec.power.limit_watts,
        decode_floor_ms=floor,
        reasons=_why(spec, model, limits, shrunk),
        warnings=warnings,
    )
