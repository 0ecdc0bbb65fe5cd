"""Plan a deployment: per-GPU memory under the engine's own start-up rule, limits it accepts, or a refusal naming what fits."""

from __future__ import annotations

from deployctl import __version__, engines
from deployctl.engines import tgi
from deployctl.engines.base import EngineInputs
from deployctl.engines.memory import EngineRules
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
from deployctl.planner.rules import rules_for
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
        reasons.append(f"max_total_tokens {limits.max_total_tokens}: from the spec")
    elif shrunk:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the largest the engine's KV cache accepts"
            " (one full-length request must fit)"
        )
    else:
        reasons.append(
            f"max_total_tokens {limits.max_total_tokens}: the model's context ({model.context_length}) capped at {DEFAULT_MAX_TOTAL}"
        )
    src = "from the spec" if spec.limits.max_input_tokens else f"max_total_tokens minus {ANSWER_ROOM} for the answer"
    reasons.append(f"max_input_tokens {limits.max_input_tokens}: {src}")
    batch = limits.max_batch_prefill_tokens
    if spec.limits.max_batch_prefill_tokens:
        src = "from the spec (chunked prefill splits longer prompts)"
    elif batch == max(batch_options(rules, free_batch(spec), gpu, limits.max_input_tokens)):
        src = "chunked prefill splits longer prompts into chunks of this size; the largest default that fits"
    else:
        src = "the smaller budget chunked prefill allows: its warm-up peak is smaller, leaving the KV cache room for max_total_tokens"
    reasons.append(f"{rules.batch_name} {batch}: {src}")
    src = "from the spec" if spec.limits.max_concurrent_requests else f"{rules.name}'s default; more wait in its queue"
    reasons.append(f"max_concurrent_requests {limits.max_concurrent_requests}: {src}")
    dtype = "fp8 (1 byte per element)" if kv_dtype == "fp8" else f"{model.dtype} (the model's dtype)"
    reasons.append(
        f"KV cache: {limits.kv_cache_tokens} tokens in {dtype} under {rules.title}'s start-up rule,"
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


def refuse_unloadable(model: ModelFacts, rules: EngineRules) -> None:
    """Raise PlanRefused when the engine's release does not load the checkpoint, naming what would."""
    why = rules.loads(model)
    if why is None:
        return
    ways = [
        f"--engine {name} ({other.title} loads it)"
        for name in engines.names()
        if name != rules.name and (other := rules_for(name)).loads(model) is None
    ]
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
    raise PlanRefused(f"{model.name} does not load in {rules.title}: {why}", "what would load: " + "; ".join(ways))


def _other_counts(spec: DeploymentSpec, model: ModelFacts, host: Host, n: int) -> str:
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
            plan(spec.model_copy(update={"gpus": k}), model, trial)
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
    spec: DeploymentSpec, model: ModelFacts, host: Host, simulate: bool = False, *, kv_cache_dtype: str = "auto"
) -> Plan:
    """Give the plan for serving `model` on `host` as `spec` asks, or raise PlanRefused saying what would fit."""
    rules = rules_for(spec.engine, spec.image, unverified=spec.unverified_engine)
    gpus = _select(spec, host)
    n = len(gpus)
    refuse_unloadable(model, rules)
    problem = model.sharding_problem(n)
    if problem:
        raise PlanRefused(f"{model.name} cannot be split over {n} GPUs: {problem}", _other_counts(spec, model, host, n))
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
            f"{model.name} does not fit {n} x {gpus[0].name} ({gib(gpus[0].memory_total)} each) with {rules.name}"
            f" ({rules.title}): {what}",
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
    warnings = [rules.guess] if rules.guess else []
    warnings += [w] if (w := _quantize_warning(spec, model)) else []
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
                tied_copy=rules.tied_copy,
                kv_dtype=kv_dtype,
            ),
            1,
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
            knobs=smallest(fit.kv).knobs,
            kv_cache_dtype=kv_dtype,
            mount_model=model.path is not None,
        )
    )
    if n > 1 and not host.p2p:
        rendered = [f"{k}={v}" for k, v in engine.env.items() if k.startswith("NCCL_")]
        rendered += [a for a in engine.args if a == "--disable-custom-all-reduce"]
        warnings.append(
            "no peer-to-peer between the GPUs: NCCL goes through host memory"
            f" (rendered: {', '.join(rendered) or 'nothing'}; shm {engine.shm_size})"
        )
    device_ids = [str(g.index) if g.source == "profile" else g.uuid for g in gpus]
    knobs = dict(smallest(fit.kv).knobs)
    if kv_dtype == "fp8":
        knobs["--kv-cache-dtype"] = "fp8_e4m3fn" if rules.name == "tgi" else "fp8"
    if rules.name == "tgi":
        knobs["TGI_WIGGLE_ROOM"] = f"{tgi.WIGGLE_ROOM:.2f} (default, not set)"
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
        engine_release=rules.title,
        unverified_engine=rules.guess,
        kv_cache_dtype=kv_dtype,
        memory_fraction=fit.fraction,
        knobs=knobs,
    )
