"""Plan a deployment: per-GPU memory under the engine's own start-up rule, limits it accepts, or a refusal naming what fits."""

from __future__ import annotations

from deployctl import __version__, engines
from deployctl.engines import tgi_rules
from deployctl.engines.base import EngineInputs
from deployctl.errors import InputError, PlanRefused
from deployctl.gpus import PROFILES, for_name
from deployctl.hardware.gpu import Gpu, Host
from deployctl.models import ModelFacts
from deployctl.planner import memory
from deployctl.planner.fit import (
    ANSWER_ROOM,
    DEFAULT_MAX_TOTAL,
    Ask,
    Fit,
    batch_options,
    first_fit,
    free_batch,
    gpu_budgets,
    largest_fit,
    limits_for,
    what_would_fit,
    with_,
)
from deployctl.planner.memory import gib
from deployctl.planner.rules import EngineRules, rules_for
from deployctl.planner.types import Plan
from deployctl.spec import DeploymentSpec

__all__ = ["EngineRules", "Plan", "plan", "rules_for"]


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


def _why(
    spec: DeploymentSpec, model: ModelFacts, gpu: Gpu, fit: Fit, rules: EngineRules, shrunk: bool, kv_dtype: str
) -> list[str]:
    limits = fit.limits
    reasons = []
    if spec.limits.max_total_tokens:
        reasons.append(f"max_total_tokens {limits.max_total_tokens}: {spec.source_of('limits.max_total_tokens')}")
    elif shrunk:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the largest the engine's KV cache accepts"
            " (one full-length request must fit)"
        )
    else:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the model's context ({model.context_length}) capped at {DEFAULT_MAX_TOTAL}"
        )
    src = (
        spec.source_of("limits.max_input_tokens")
        if spec.limits.max_input_tokens
        else f"max_total_tokens minus {ANSWER_ROOM} for the answer"
    )
    reasons.append(f"max_input_tokens {limits.max_input_tokens}: {src}")
    batch = limits.max_batch_prefill_tokens
    if spec.limits.max_batch_prefill_tokens:
        src = f"{spec.source_of('limits.max_batch_prefill_tokens')} (chunked prefill splits longer prompts)"
    elif batch == max(batch_options(rules, free_batch(spec), gpu, limits.max_input_tokens)):
        src = "chunked prefill splits longer prompts into chunks of this size; the largest default that fits"
    else:
        src = "the smaller chunked-prefill budget: its warm-up peak is smaller, leaving the KV cache room for max_total_tokens"
    reasons.append(f"{rules.batch_name} {batch}: {src}")
    src = (
        spec.source_of("limits.max_concurrent_requests")
        if spec.limits.max_concurrent_requests
        else f"{rules.name}'s default; more wait in its queue"
    )
    reasons.append(f"max_concurrent_requests {limits.max_concurrent_requests}: {src}")
    dtype = "fp8 (1 byte per element)" if kv_dtype == "fp8" else f"{model.dtype} (the model's dtype)"
    reasons.append(
        f"KV cache: {limits.kv_cache_tokens} tokens in {dtype} under {rules.name}'s start-up rule,"
        f" {limits.full_length_requests} request(s) of full length at once"
    )
    return reasons


def _quantize_warning(spec: DeploymentSpec, model: ModelFacts) -> str | None:
    """The checkpoint says how it is quantized; say so when the spec's model.quantize disagrees.

    A warning, not an error: `deployctl init` writes `quantize: gptq` into every starter spec.
    """
    if "quantize" not in spec.model.model_fields_set or spec.model.quantize == model.quantization.method:
        return None
    said = model.quantization.method if model.quantization.method != "none" else f"unquantized {model.dtype}"
    flag = engines.get(spec.engine).quantization_flag(model.quantization)
    return (
        f"model.quantize: {spec.model.quantize} is ignored: the checkpoint is {said}"
        f" ({'no flag, the engine reads it' if flag is None else 'flag ' + flag})"
    )


def decode_floor_ms(
    model: ModelFacts, *, weights_per_gpu: int, kv_tokens_read: int, shards: int, bandwidth_gbs: float
) -> float:
    """Give the floor on one decode step: bytes each GPU must read (weights + KV) / memory bandwidth.

    MoE at batch 1 reads only the routed experts' share of the expert weights.
    """
    weights = weights_per_gpu
    if model.is_moe and model.experts:
        expert = model.layout.split * model.experts_per_token // model.experts // shards
        weights = weights_per_gpu - model.layout.split // shards + expert
    kv = kv_tokens_read * memory.kv_bytes_per_token_per_shard(model, shards)
    return round((weights + kv) / (bandwidth_gbs * 1e9) * 1000, 1)


def bandwidth_of(host: Host, gpu: Gpu) -> float | None:
    name = host.profile or (p.name if (p := for_name(gpu.name)) else None)
    return PROFILES[name].bandwidth_gbs if name else None


def plan(
    spec: DeploymentSpec, model: ModelFacts, host: Host, simulate: bool = False, *, kv_cache_dtype: str = "auto"
) -> Plan:
    """Give the plan for serving `model` on `host` as `spec` asks, or raise PlanRefused saying what would fit."""
    rules = rules_for(spec.engine)
    gpus = _select(spec, host)
    n = len(gpus)
    problem = model.sharding_problem(n)
    if problem:
        good = [k for k in (1, 2, 4, 8) if not model.sharding_problem(k)]
        raise InputError(
            f"{model.name} cannot be split over {n} GPUs: {problem}", f"use --gpus {' or '.join(map(str, good))}"
        )
    wanted = spec.limits.max_total_tokens or min(model.context_length, DEFAULT_MAX_TOTAL)
    if spec.limits.max_total_tokens and wanted > model.context_length:
        raise InputError(
            f"limits.max_total_tokens: {wanted} is beyond the model's context of {model.context_length} tokens"
        )
    base = Ask(rules, model, gpus, kv_cache_dtype, 0)
    fit = first_fit(base, spec, wanted)
    shrunk = False
    if fit is None and not spec.limits.max_total_tokens:
        fit = largest_fit(base, spec, wanted)
        shrunk = fit is not None
    if fit is None:
        max_input, _ = limits_for(wanted, spec)
        batch = batch_options(rules, spec, gpus[0], max_input)[-1]
        b = gpu_budgets(with_(base, batch_tokens=batch))[0][0]
        what = (
            f"weights {gib(b.weights)} per GPU"
            if b.weights + b.runtime_reserve + b.used_by_others >= b.total
            else f"{gib(b.weights)} of weights per GPU leave {rules.name} room for {b.kv_tokens} KV tokens, {wanted} needed"
        )
        raise PlanRefused(
            f"{model.name} does not fit {n} x {gpus[0].name} ({gib(gpus[0].memory_total)} each) with {rules.name}: {what}",
            "what would fit: " + what_would_fit(with_(base, batch_tokens=batch), spec, host, wanted),
        )
    return _assemble(spec, model, host, gpus, fit, shrunk, rules, kv_cache_dtype)


def _assemble(
    spec: DeploymentSpec,
    model: ModelFacts,
    host: Host,
    gpus: list[Gpu],
    fit: Fit,
    shrunk: bool,
    rules: EngineRules,
    kv_dtype: str,
) -> Plan:
    n = len(gpus)
    warnings = [w] if (w := _quantize_warning(spec, model)) else []
    limits = fit.limits
    if limits.full_length_requests < 2:
        warnings.append(
            f"the KV cache holds {limits.kv_cache_tokens} tokens: one request of full length at a time; "
            "shorter requests batch better"
        )
    others = max(b.used_by_others for b in fit.budgets)
    if others:
        warnings.append(
            f"another process holds {gib(others)} on a chosen GPU: {rules.name} sized its cache around it;"
            " if that process grows, the engine runs out of memory"
        )
    if n > 1 and not host.p2p:
        warnings.append("no peer-to-peer between the GPUs: NCCL goes through host memory (NCCL_P2P_DISABLE=1)")
    if model.weight_bytes_source == "estimate" and model.path is not None:
        warnings.append("no *.safetensors found: weights estimated from config.json")
    if model.ignored_files:
        warnings.append(
            f"not loaded (not in the index / not HF shard names): {', '.join(model.ignored_files[:4])}"
            + (" ..." if len(model.ignored_files) > 4 else "")
        )
    if model.is_moe:
        warnings.append(
            f"mixture of experts: all {model.experts} experts are loaded on every GPU group"
            f" ({model.experts_per_token} run per token)"
        )
    served = spec.model.served_name or model.name
    bandwidth = bandwidth_of(host, gpus[0])
    floor = (
        decode_floor_ms(
            model,
            weights_per_gpu=fit.budgets[0].weights,
            kv_tokens_read=limits.max_total_tokens,
            shards=n,
            bandwidth_gbs=bandwidth,
        )
        if bandwidth
        else None
    )
    chosen = engines.get(spec.engine)
    engine = chosen.configure(
        EngineInputs(
            image=spec.image or chosen.default_image,
            served_name=served,
            quantization=model.quantization,
            num_shard=n,
            limits=limits,
            p2p=host.p2p,
            knobs=fit.kv[0].knobs,
            kv_cache_dtype=kv_dtype,
            mount_model=model.path is not None,
        )
    )
    device_ids = [str(g.index) if g.source == "profile" else g.uuid for g in gpus]
    knobs = dict(fit.kv[0].knobs)
    if kv_dtype == "fp8":
        knobs["--kv-cache-dtype"] = "fp8_e4m3fn" if rules.name == "tgi" else "fp8"
    if rules.name == "tgi":
        knobs["TGI_WIGGLE_ROOM"] = f"{tgi_rules.WIGGLE_ROOM:.2f} (default, not set)"
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
        reasons=_why(spec, model, gpus[0], fit, rules, shrunk, kv_dtype),
        warnings=warnings,
        engine_name=rules.name,
        kv_cache_dtype=kv_dtype,
        memory_fraction=fit.fraction,
        knobs=knobs,
    )
