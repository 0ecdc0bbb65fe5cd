"""Plan a deployment: per-GPU memory under the engine's own start-up rule, limits it accepts, or a refusal naming what fits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from deployctl import __version__
from deployctl.engines import tgi, tgi_rules, vllm_rules
from deployctl.errors import InputError, PlanRefused
from deployctl.gpus import PROFILES, for_name
from deployctl.hardware.gpu import Gpu, Host
from deployctl.models import ModelFacts
from deployctl.planner import memory
from deployctl.planner.memory import gib
from deployctl.planner.types import ChosenLimits, EngineConfig, GpuBudget, KvBudget, Plan, StartupInput
from deployctl.spec import DEFAULT_TGI_IMAGE, DeploymentSpec

__all__ = ["EngineRules", "Plan", "plan", "rules_for"]

# deployctl's policy, not an engine's: the longest context it plans by default, the shortest it
# offers, the room it leaves for the answer, and its search step.
DEFAULT_MAX_TOTAL = 8192
MIN_MAX_TOTAL = 1024
ANSWER_ROOM = 1024  # tokens max_input_tokens leaves for the answer when the planner chooses it
TGI_MAX_CONCURRENT = 128  # TGI launcher default for --max-concurrent-requests (shared/tgi/launcher-flags.md)
STEP = 256
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"  # until the vLLM engine module (#11) owns the image
VLLM_PORT = 8000  # vLLM's OpenAI server default port (shared/vllm/serve-flags.md)


@dataclass(frozen=True)
class EngineRules:
    """One engine's start-up memory rule and the choices that go with it (pure functions)."""

    name: str
    startup_kv: Callable[[StartupInput], KvBudget]
    accepts: Callable[[int, int], bool]
    tied_copy: bool  # loads a tied lm_head as a second copy of the embedding
    batch_name: str  # the flag that sets the prefill budget
    batch_candidates: Callable[[Gpu, int], list[int]]  # (GPU, max_input_tokens) -> budgets, largest first
    fraction: Callable[[int, int], float]  # (GPU total, used by others) -> memory fraction knob
    max_seqs: Callable[[Gpu], int]


def _tgi_batches(gpu: Gpu, max_input: int) -> list[int]:
    # Chunked prefill: any budget is legal; 4096 keeps prompts to one or two chunks, 2048 frees memory.
    return [4096, tgi_rules.MIN_PREFILL]


def _vllm_batches(gpu: Gpu, max_input: int) -> list[int]:
    first = vllm_rules.default_batch_tokens(_cuda_total(gpu), gpu.name)
    return sorted({first, 2048}, reverse=True)


RULES = {
    "tgi": EngineRules(
        name="tgi",
        startup_kv=tgi_rules.startup_kv,
        accepts=tgi_rules.accepts,
        tied_copy=True,
        batch_name="max_batch_prefill_tokens",
        batch_candidates=_tgi_batches,
        # TGI measures free memory itself (torch.cuda.mem_get_info), so others' use is already
        # excluded; a fraction below 1 would take it off a second time.
        fraction=lambda total, others: 1.0,
        max_seqs=lambda gpu: TGI_MAX_CONCURRENT,
    ),
    "vllm": EngineRules(
        name="vllm",
        startup_kv=vllm_rules.startup_kv,
        accepts=vllm_rules.accepts,
        tied_copy=False,
        batch_name="max_num_batched_tokens",
        batch_candidates=_vllm_batches,
        fraction=vllm_rules.utilization_for,
        max_seqs=lambda gpu: vllm_rules.default_max_seqs(_cuda_total(gpu), gpu.name),
    ),
}


def rules_for(engine: str) -> EngineRules:
    """Give the memory rule of the named engine."""
    if engine not in RULES:
        raise InputError(f"engine: {engine!r} is not supported", f"allowed: {', '.join(RULES)}")
    return RULES[engine]


@dataclass(frozen=True)
class _Fit:
    limits: ChosenLimits
    budgets: list[GpuBudget]
    kv: list[KvBudget]
    fraction: float


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


def _others(g: Gpu) -> int:
    return g.memory_used if g.memory_used > memory.IDLE_USE else 0


def _cuda_total(g: Gpu) -> int:
    # NVML's total includes what the driver keeps (it shows as used on an idle GPU); CUDA's does not.
    return g.memory_total if g.source == "profile" else g.memory_total - min(g.memory_used, memory.IDLE_USE)


@dataclass(frozen=True)
class _Ask:
    """What one attempt asks of the engine rule."""

    rules: EngineRules
    model: ModelFacts
    gpus: list[Gpu]
    kv_dtype: str
    batch_tokens: int


def _budgets(ask: _Ask) -> tuple[list[GpuBudget], list[KvBudget], float]:
    n = len(ask.gpus)
    model, rules = ask.model, ask.rules
    weights = model.shard_weight_bytes(n, tied_copy=rules.tied_copy)
    out, kvs, fractions = [], [], []
    for g in ask.gpus:
        total, others = _cuda_total(g), _others(g)
        fraction = rules.fraction(total, others)
        kv = rules.startup_kv(
            StartupInput(
                total=total,
                used_by_others=others,
                weights=weights,
                shards=n,
                batch_tokens=ask.batch_tokens,
                max_seqs=rules.max_seqs(g),
                activation_bytes_per_token=memory.activation_bytes_per_token(model, n),
                logits_bytes_per_seq=memory.logits_bytes_per_seq(model),
                kv_bytes_per_token=memory.kv_bytes_per_token_per_shard(model, n, ask.kv_dtype),
                memory_fraction=fraction,
            )
        )
        fractions.append(fraction)
        kvs.append(kv)
        out.append(
            GpuBudget(
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                total=total,
                used_by_others=others,
                runtime_reserve=kv.runtime,
                weights=weights,
                prefill_reserve=kv.activations,
                kv_cache=kv.kv_bytes,
                kv_tokens=kv.kv_tokens,
                engine_reserve=max(0, total - others - kv.runtime - weights - kv.activations - kv.kv_bytes),
            )
        )
    return out, kvs, min(fractions)


def _limits_for(total: int, spec: DeploymentSpec) -> tuple[int, int]:
    lim = spec.limits
    max_input = lim.max_input_tokens or (total - ANSWER_ROOM if total > 2 * ANSWER_ROOM else total // 2)
    return max_input, total


def _batch_options(rules: EngineRules, spec: DeploymentSpec, gpu: Gpu, max_input: int) -> list[int]:
    if spec.limits.max_batch_prefill_tokens:
        return [spec.limits.max_batch_prefill_tokens]
    return rules.batch_candidates(gpu, max_input)


def _try(ask: _Ask, spec: DeploymentSpec, total: int) -> _Fit | None:
    """Give the fit at max_total_tokens=total, or None when the engine would refuse it."""
    max_input, total = _limits_for(total, spec)
    if max_input >= total:
        return None
    budgets, kvs, fraction = _budgets(ask)
    kv_tokens = min(b.kv_tokens for b in budgets)
    if not ask.rules.accepts(total, kv_tokens):
        return None
    concurrency = spec.limits.max_concurrent_requests or ask.rules.max_seqs(ask.gpus[0])
    limits = ChosenLimits(
        max_input_tokens=max_input,
        max_total_tokens=total,
        max_batch_prefill_tokens=ask.batch_tokens,
        max_concurrent_requests=concurrency,
        kv_cache_tokens=kv_tokens,
    )
    return _Fit(limits, budgets, kvs, fraction)


def _first_fit(base: _Ask, spec: DeploymentSpec, total: int) -> _Fit | None:
    """Give the fit with the largest prefill budget that keeps max_total_tokens=total."""
    max_input, _ = _limits_for(total, spec)
    for batch in _batch_options(base.rules, spec, base.gpus[0], max_input):
        fit = _try(_with(base, batch_tokens=batch), spec, total)
        if fit:
            return fit
    return None


def _with(ask: _Ask, **changes: Any) -> _Ask:
    return replace(ask, **changes)


def _largest_fit(base: _Ask, spec: DeploymentSpec, ceiling: int) -> _Fit | None:
    total = ceiling - ceiling % STEP if ceiling > STEP else ceiling
    while total >= MIN_MAX_TOTAL:
        fit = _first_fit(base, spec, total)
        if fit:
            return fit
        total -= STEP
    return None


def _profile_gpus(template: Gpu, count: int) -> list[Gpu]:
    return [
        template.model_copy(update={"index": i, "uuid": f"{template.uuid}#{i}", "memory_used": 0}) for i in range(count)
    ]


def _what_would_fit(base: _Ask, spec: DeploymentSpec, host: Host, wanted: int) -> str:
    """Give the refusal's last sentence: shorter context, fp8 KV, smaller prefill budget, more GPUs, smaller model."""
    n, rules, ways = len(base.gpus), base.rules, []
    relaxed = spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_input_tokens": None})})
    shorter = _largest_fit(base, relaxed, wanted - STEP) if wanted > MIN_MAX_TOTAL else None
    if shorter:
        s = shorter.limits
        ways.append(
            f"max_total_tokens {s.max_total_tokens} or less fits on {n} GPU{'s' if n > 1 else ''}"
            f" (with max_input_tokens {s.max_input_tokens})"
        )
    if base.kv_dtype == "auto":
        fp8 = _first_fit(_with(base, kv_dtype="fp8"), spec, wanted) or _largest_fit(
            _with(base, kv_dtype="fp8"), relaxed, wanted
        )
        if fp8:
            ways.append(
                f"--kv-cache-dtype fp8 gives {fp8.limits.kv_cache_tokens} KV tokens"
                f" (max_total_tokens {fp8.limits.max_total_tokens})"
            )
    if spec.limits.max_batch_prefill_tokens and spec.limits.max_batch_prefill_tokens > tgi_rules.MIN_PREFILL:
        small = _first_fit(_with(base, batch_tokens=tgi_rules.MIN_PREFILL), _free_batch(spec), wanted)
        if small:
            ways.append(f"{rules.batch_name} {tgi_rules.MIN_PREFILL} fits max_total_tokens {wanted}")
    for more in range(n + 1, host.max_gpus + 1):
        if base.model.sharding_problem(more):
            continue
        bigger = _with(base, gpus=_profile_gpus(base.gpus[0], more))
        fit = _first_fit(bigger, spec, wanted) or _largest_fit(bigger, relaxed, wanted)
        if fit:
            ways.append(f"{more} GPUs fit it (use --gpus {more}, max_total_tokens {fit.limits.max_total_tokens})")
            break
    if not ways:
        limit = host.max_gpus
        usable = sum(_cuda_total(g) for g in _profile_gpus(base.gpus[0], limit))
        # Keep a quarter for runtime, activations and KV cache; 4-bit GPTQ weighs ~0.52 bytes a parameter.
        params = usable * 0.75 / 0.52 / 1e9
        ways.append(f"a smaller model: about {params:.0f}B parameters at 4 bit fit on {limit} x {base.gpus[0].name}")
    return "; ".join(ways)


def _free_batch(spec: DeploymentSpec) -> DeploymentSpec:
    return spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_batch_prefill_tokens": None})})


def _why(
    spec: DeploymentSpec, model: ModelFacts, gpu: Gpu, fit: _Fit, rules: EngineRules, shrunk: bool, kv_dtype: str
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
    elif batch == max(_batch_options(rules, _free_batch(spec), gpu, limits.max_input_tokens)):
        src = "chunked prefill splits longer prompts into chunks of this size; the largest default that fits"
    else:
        src = "the smaller chunked-prefill budget: its warm-up peak is smaller, leaving the KV cache room for max_total_tokens"
    reasons.append(f"{rules.batch_name} {batch}: {src}")
    src = "from the spec" if spec.limits.max_concurrent_requests else f"{rules.name}'s default; more wait in its queue"
    reasons.append(f"max_concurrent_requests {limits.max_concurrent_requests}: {src}")
    dtype = "fp8 (1 byte per element)" if kv_dtype == "fp8" else f"{model.dtype} (the model's dtype)"
    reasons.append(
        f"KV cache: {limits.kv_cache_tokens} tokens in {dtype} under {rules.name}'s start-up rule,"
        f" {limits.full_length_requests} request(s) of full length at once"
    )
    return reasons


def _check_quantize(spec: DeploymentSpec, model: ModelFacts) -> None:
    """The checkpoint says how it is quantized; an explicit model.quantize that disagrees is bad input."""
    if "quantize" not in spec.model.model_fields_set:
        return
    actual = {"gptq": "gptq", "awq": "awq", "none": "none"}.get(model.quantization.method, "compressed-tensors")
    if spec.model.quantize != actual:
        said = model.quantization.method if actual != "none" else f"unquantized {model.dtype}"
        raise InputError(
            f"model.quantize: {spec.model.quantize} but the checkpoint is {said}",
            "leave model.quantize out: deployctl reads the quantization from the checkpoint",
        )


def decode_floor_ms(
    model: ModelFacts, weights_per_gpu: int, kv_tokens_read: int, shards: int, bandwidth_gbs: float
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
    _check_quantize(spec, model)
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
    base = _Ask(rules, model, gpus, kv_cache_dtype, 0)
    fit = _first_fit(base, spec, wanted)
    shrunk = False
    if fit is None and not spec.limits.max_total_tokens:
        fit = _largest_fit(base, spec, wanted)
        shrunk = fit is not None
    if fit is None:
        max_input, _ = _limits_for(wanted, spec)
        batch = _batch_options(rules, spec, gpus[0], max_input)[-1]
        b = _budgets(_with(base, batch_tokens=batch))[0][0]
        what = (
            f"weights {gib(b.weights)} per GPU"
            if b.weights + b.runtime_reserve + b.used_by_others >= b.total
            else f"{gib(b.weights)} of weights per GPU leave {rules.name} room for {b.kv_tokens} KV tokens, {wanted} needed"
        )
        raise PlanRefused(
            f"{model.name} does not fit {n} x {gpus[0].name} ({gib(gpus[0].memory_total)} each) with {rules.name}: {what}",
            "what would fit: " + _what_would_fit(_with(base, batch_tokens=batch), spec, host, wanted),
        )
    return _assemble(spec, model, host, gpus, fit, shrunk, rules, kv_cache_dtype)


def _engine(spec: DeploymentSpec, model: ModelFacts, host: Host, fit: _Fit, n: int, kv_dtype: str) -> EngineConfig:
    served = spec.model.served_name or model.name
    if spec.engine == "tgi":
        return tgi.engine_config(
            image=spec.image,
            served_name=served,
            quantize=model.quantization.tgi_flag() or "none",
            num_shard=n,
            limits=fit.limits,
            p2p=host.p2p,
            cuda_memory_fraction=fit.fraction if fit.fraction < 1 else None,
            mount_model=model.path is not None,
            kv_cache_dtype="fp8_e4m3fn" if kv_dtype == "fp8" else None,
        )
    return _vllm_engine(spec, model, host, fit, n, kv_dtype)


def _vllm_engine(spec: DeploymentSpec, model: ModelFacts, host: Host, fit: _Fit, n: int, kv_dtype: str) -> EngineConfig:
    # The arguments the memory rule assumed; helper #11's engines/vllm.py takes this over.
    served = spec.model.served_name or model.name
    lim = fit.limits
    args = [tgi.model_id(served), "--served-model-name", served, "--host", "0.0.0.0", "--port", str(VLLM_PORT)]
    args += ["--tensor-parallel-size", str(n), "--max-model-len", str(lim.max_total_tokens)]
    knobs = fit.kv[0].knobs
    args += ["--gpu-memory-utilization", knobs["--gpu-memory-utilization"]]
    args += [
        "--max-num-batched-tokens",
        str(lim.max_batch_prefill_tokens),
        "--max-num-seqs",
        str(lim.max_concurrent_requests),
    ]
    if (flag := model.quantization.vllm_flag()) is not None:
        args += ["--quantization", flag]
    if kv_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if n > 1 and not host.p2p:
        args.append("--disable-custom-all-reduce")
    env = {"HF_HUB_OFFLINE": "1", "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0", "VLLM_NO_USAGE_STATS": "1"}
    return EngineConfig(
        kind="vllm",
        image=VLLM_IMAGE if spec.image == DEFAULT_TGI_IMAGE else spec.image,
        args=args,
        env=env,
        container_port=VLLM_PORT,
        health_path="/health",
        model_mount=tgi.model_id(served) if model.path is not None else None,
        shm_size="8gb" if n > 1 else None,
    )


def _assemble(
    spec: DeploymentSpec,
    model: ModelFacts,
    host: Host,
    gpus: list[Gpu],
    fit: _Fit,
    shrunk: bool,
    rules: EngineRules,
    kv_dtype: str,
) -> Plan:
    n = len(gpus)
    warnings = []
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
    engine = _engine(spec, model, host, fit, n, kv_dtype)
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
        model_id=tgi.model_id(served),
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
