"""Plan a deployment: per-GPU memory under the engine's own start-up rule, limits it accepts, or a refusal naming what fits."""

from __future__ import annotations

from deployctl import __version__, engines
from deployctl.engines.base import Engine, EngineInputs
from deployctl.errors import DeployctlError, InputError, PlanRefused
from deployctl.gpus import PROFILES, for_name
from deployctl.gpus.gpu import Gpu, Host
from deployctl.models import ModelFacts
from deployctl.plan import Plan
from deployctl.planner import bounds
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
    smallest,
    what_would_fit,
    with_,
)
from deployctl.planner.memory import gib
from deployctl.spec import DeploymentSpec

__all__ = ["Plan", "plan"]


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
    spec: DeploymentSpec, model: ModelFacts, gpu: Gpu, fit: Fit, engine: Engine, shrunk: bool, kv_dtype: str
) -> list[str]:
    rules = fit.rule
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
        src = "the smaller budget chunked prefill allows: its warm-up peak is smaller, leaving the KV cache room for max_total_tokens"
    reasons.append(f"{rules.batch_name} {batch}: {src}")
    src = (
        spec.source_of("limits.max_concurrent_requests")
        if spec.limits.max_concurrent_requests
        else f"{engine.name}'s default; more wait in its queue"
    )
    reasons.append(f"max_concurrent_requests {limits.max_concurrent_requests}: {src}")
    dtype = "fp8 (1 byte per element)" if kv_dtype == "fp8" else f"{model.dtype} (the model's dtype)"
    reasons.append(
        f"KV cache: {limits.kv_cache_tokens} tokens in {dtype} under {rules.title}'s start-up rule,"
        f" {limits.full_length_requests} request(s) of full length at once"
    )
    return reasons


def _quantize_warning(spec: DeploymentSpec, model: ModelFacts, engine: Engine) -> str | None:
    """The checkpoint says how it is quantized; say so when the spec's model.quantize disagrees.

    A warning, not an error: `deployctl init` writes `quantize: gptq` into every starter spec.
    """
    if "quantize" not in spec.model.model_fields_set or spec.model.quantize == model.quantization.method:
        return None
    said = model.quantization.method if model.quantization.method != "none" else f"unquantized {model.dtype}"
    flag = engine.quantization_flag(model.quantization)
    return (
        f"model.quantize: {spec.model.quantize} is ignored: the checkpoint is {said}"
        f" ({'no flag, the engine reads it' if flag is None else 'flag ' + flag})"
    )


def refuse_unloadable(model: ModelFacts, engine: Engine, release: str) -> None:
    """Raise PlanRefused when the engine's pinned release does not load the checkpoint, naming what would."""
    why = engine.loads(model)
    if why is None:
        return
    ways = []
    for name in engines.names():
        other = engines.get(name)
        if name != engine.name and other.loads(model) is None:
            ways.append(f"--engine {name} ({other.memory_rule(other.default_image).title} loads it)")
    q = model.quantization
    if q.act_order:
        ways.append(
            "a GPTQ build without act-order (desc_act: false)"
            if q.method == "gptq"
            else "a build without activation ordering (actorder: weight or null)"
        )
        ways.append("an AWQ build of the same model")
    elif not ways:
        ways.append("another build of the model (AWQ, or GPTQ symmetric 4-bit)")
    raise PlanRefused(f"{model.name} does not load in {release}: {why}", "what would load: " + "; ".join(ways))


def _other_counts(spec: DeploymentSpec, model: ModelFacts, host: Host, n: int, engine: Engine) -> str:
    """Give the hint for a model that does not split over `n` GPUs: the GPU counts that split it and fit, or
    what else would (only counts the planner has checked)."""
    limit = max(host.max_gpus, n)
    fits = []
    for k in range(1, limit + 1):
        if k == n or model.sharding_problem(k):
            continue
        gpu = host.gpus[0]
        trial = host.model_copy(
            update={"gpus": [gpu.model_copy(update={"index": i, "uuid": f"{gpu.uuid}#{i}"}) for i in range(k)]}
        )
        try:
            plan(spec.model_copy(update={"gpus": k}), model, trial, engine=engine)
        except DeployctlError:
            continue
        fits.append(k)
    if fits:
        return "use --gpus " + " or ".join(map(str, fits))
    return (
        f"no GPU count up to {limit} both splits it and fits: a build whose layers split into whole quantization"
        f" groups over {n} GPUs (e.g. Qwen's padded intermediate_size), or a smaller model"
    )


def bandwidth_of(host: Host, gpu: Gpu) -> float | None:
    name = host.profile or (p.name if (p := for_name(gpu.name)) else None)
    return PROFILES[name].bandwidth_gbs if name else None


def plan(
    spec: DeploymentSpec,
    model: ModelFacts,
    host: Host,
    simulate: bool = False,
    *,
    kv_cache_dtype: str = "auto",
    engine: Engine | None = None,
) -> Plan:
    """Give the plan for serving `model` on `host` as `spec` asks, or raise PlanRefused saying what would fit.

    `engine` is the spec's engine when the caller has it already (`plan --compare` plans many hosts).
    """
    engine = engine or engines.get(spec.engine)
    image = spec.image or engine.default_image
    rules = engine.memory_rule(image, unverified=spec.unverified_engine)
    gpus = _select(spec, host)
    n = len(gpus)
    refuse_unloadable(model, engine, rules.title)
    problem = model.sharding_problem(n)
    if problem:
        raise PlanRefused(
            f"{model.name} cannot be split over {n} GPUs: {problem}", _other_counts(spec, model, host, n, engine)
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
            else f"{gib(b.weights)} of weights per GPU leave {engine.name} room for {b.kv_tokens} KV tokens, {wanted} needed"
        )
        raise PlanRefused(
            f"{model.name} does not fit {n} x {gpus[0].name} ({gib(gpus[0].memory_total)} each) with {engine.name}"
            f" ({rules.title}): {what}",
            "what would fit: " + what_would_fit(with_(base, batch_tokens=batch), spec, host, wanted),
        )
    return _assemble(spec, model, host, gpus, fit, shrunk, engine, image, kv_cache_dtype)


def _assemble(
    spec: DeploymentSpec,
    model: ModelFacts,
    host: Host,
    gpus: list[Gpu],
    fit: Fit,
    shrunk: bool,
    engine: Engine,
    image: str,
    kv_dtype: str,
) -> Plan:
    n = len(gpus)
    warnings = [fit.rule.guess] if fit.rule.guess else []
    warnings += [w] if (w := _quantize_warning(spec, model, engine)) else []
    limits = fit.limits
    if limits.full_length_requests < 2:
        warnings.append(
            f"the KV cache holds {limits.kv_cache_tokens} tokens: one request of full length at a time; "
            "shorter requests batch better"
        )
    others = max(b.used_by_others for b in fit.budgets)
    if others:
        warnings.append(
            f"another process holds {gib(others)} on a chosen GPU: {engine.name} sized its cache around it;"
            " if that process grows, the engine runs out of memory"
        )
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
        round(
            bounds.decode_floor_ms(
                model,
                fit.budgets[0].weights,
                bounds.Hardware(n, bandwidth, 0.0),
                context=limits.max_total_tokens,
                tied_copy=fit.rule.tied_copy,
                kv_dtype=kv_dtype,
            ),
            1,
        )
        if bandwidth
        else None
    )
    config = engine.configure(
        EngineInputs(
            image=image,
            served_name=served,
            quantization=model.quantization,
            num_shard=n,
            limits=limits,
            p2p=host.p2p,
            knobs=smallest(fit.kv).knobs,
            kv_cache_dtype=kv_dtype,
            mount_model=model.path is not None,
            weight_bytes=sum(b.weights for b in fit.budgets),
        )
    )
    if n > 1 and not host.p2p:
        rendered = [f"{k}={v}" for k, v in config.env.items() if k.startswith("NCCL_")]
        rendered += [a for a in config.args if a == "--disable-custom-all-reduce"]
        warnings.append(
            "no peer-to-peer between the GPUs: NCCL goes through host memory"
            f" (rendered: {', '.join(rendered) or 'nothing'}; shm {config.shm_size})"
        )
    device_ids = [str(g.index) if g.source == "profile" else g.uuid for g in gpus]
    knobs = {**smallest(fit.kv).knobs, **engine.kv_cache_dtype_knobs(kv_dtype), **fit.rule.assumed}
    return Plan(
        deployctl_version=__version__,
        name=spec.name,
        model=model,
        model_id=engine.model_id(served),
        served_name=served,
        revision=spec.model.revision,
        gpu_profile=host.profile,
        num_shard=n,
        device_ids=device_ids,
        p2p=host.p2p,
        gpus=fit.budgets,
        limits=limits,
        engine=config,
        bind=spec.serve.bind,
        port=spec.serve.port,
        api_key=bool(spec.serve.api_key_env or spec.serve.api_key_file),
        power_limit_watts=spec.power.limit_watts,
        decode_floor_ms=floor,
        reasons=_why(spec, model, gpus[0], fit, engine, shrunk, kv_dtype),
        warnings=warnings,
        engine_name=engine.name,
        engine_release=fit.rule.title,
        unverified_engine=fit.rule.guess,
        kv_cache_dtype=kv_dtype,
        memory_fraction=fit.fraction,
        knobs=knobs,
    )
