"""Search for the limits an engine accepts: budgets per GPU under its rule, the largest fit, what would fit instead."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from deployctl.engines.memory import Asked, KvBudget, MemoryRule, StartupInput
from deployctl.gpus.gpu import Gpu, Host, cuda_total, used_by_others
from deployctl.models import ModelFacts
from deployctl.plan import ChosenLimits, GpuBudget
from deployctl.planner import memory
from deployctl.spec import DeploymentSpec

# deployctl's policy, not an engine's: the longest context it plans by default, the shortest it
# offers, the room it leaves for the answer, and its search step.
DEFAULT_MAX_TOTAL = 8192
MIN_MAX_TOTAL = 1024
ANSWER_ROOM = 1024  # tokens max_input_tokens leaves for the answer when the planner chooses it
STEP = 256


@dataclass(frozen=True)
class Fit:
    limits: ChosenLimits
    budgets: list[GpuBudget]
    kv: list[KvBudget]
    fraction: float
    rule: MemoryRule  # the engine's rule it was found under


@dataclass(frozen=True)
class Ask:
    """What one attempt asks of the engine rule."""

    rules: MemoryRule
    model: ModelFacts
    gpus: list[Gpu]
    kv_dtype: str
    batch_tokens: int


def gpu_budgets(ask: Ask) -> tuple[list[GpuBudget], list[KvBudget], float]:
    n = len(ask.gpus)
    model, rules = ask.model, ask.rules
    weights = model.shard_weight_bytes(
        n, tied_copy=rules.tied_copy, scales_whole=rules.scales_whole(model.quantization)
    )
    out, kvs, fractions = [], [], []
    for g in ask.gpus:
        total, others = cuda_total(g), used_by_others(g)
        fraction = rules.fraction(total, others, n)
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
                head_dim=model.head_dim,
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


def smallest(kvs: list[KvBudget]) -> KvBudget:
    """Give the budget of the GPU with the fewest KV tokens: the engines start on the smallest (TGI's
    router takes the minimum over shards; vLLM takes one pool size for every rank)."""
    return min(kvs, key=lambda kv: (kv.kv_tokens, kv.warmup_room))


def limits_for(total: int, spec: DeploymentSpec) -> tuple[int, int]:
    lim = spec.limits
    max_input = lim.max_input_tokens or (total - ANSWER_ROOM if total > 2 * ANSWER_ROOM else total // 2)
    return max_input, total


def batch_options(rules: MemoryRule, spec: DeploymentSpec, gpu: Gpu, max_input: int) -> list[int]:
    if spec.limits.max_batch_prefill_tokens:
        return [spec.limits.max_batch_prefill_tokens]
    return rules.batch_candidates(gpu, max_input)


def _try(ask: Ask, spec: DeploymentSpec, total: int) -> Fit | None:
    """Give the fit at max_total_tokens=total, or None when the engine would refuse it."""
    max_input, total = limits_for(total, spec)
    if max_input >= total:
        return None
    budgets, kvs, fraction = gpu_budgets(ask)
    if ask.rules.refusal(Asked(max_input, total, ask.batch_tokens), smallest(kvs)) is not None:
        return None
    kv_tokens = smallest(kvs).kv_tokens
    concurrency = spec.limits.max_concurrent_requests or ask.rules.max_seqs(ask.gpus[0])
    limits = ChosenLimits(
        max_input_tokens=max_input,
        max_total_tokens=total,
        max_batch_prefill_tokens=ask.batch_tokens,
        max_concurrent_requests=concurrency,
        kv_cache_tokens=kv_tokens,
    )
    return Fit(limits, budgets, kvs, fraction, ask.rules)


def first_fit(base: Ask, spec: DeploymentSpec, total: int) -> Fit | None:
    """Give the fit with the largest prefill budget that keeps max_total_tokens=total."""
    max_input, _ = limits_for(total, spec)
    for batch in batch_options(base.rules, spec, base.gpus[0], max_input):
        fit = _try(with_(base, batch_tokens=batch), spec, total)
        if fit:
            return fit
    return None


def with_(ask: Ask, **changes: Any) -> Ask:
    return replace(ask, **changes)


def largest_fit(base: Ask, spec: DeploymentSpec, ceiling: int) -> Fit | None:
    total = ceiling - ceiling % STEP if ceiling > STEP else ceiling
    while total >= MIN_MAX_TOTAL:
        fit = first_fit(base, spec, total)
        if fit:
            return fit
        total -= STEP
    return None


def _profile_gpus(template: Gpu, count: int) -> list[Gpu]:
    return [
        template.model_copy(update={"index": i, "uuid": f"{template.uuid}#{i}", "memory_used": 0}) for i in range(count)
    ]


def what_would_fit(base: Ask, spec: DeploymentSpec, host: Host, wanted: int) -> str:
    """Give the refusal's last sentence: shorter context, fp8 KV, smaller prefill budget, more GPUs, smaller model."""
    n, rules, ways = len(base.gpus), base.rules, []
    relaxed = spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_input_tokens": None})})
    shorter = largest_fit(base, relaxed, wanted - STEP) if wanted > MIN_MAX_TOTAL else None
    if shorter:
        s = shorter.limits
        ways.append(
            f"max_total_tokens {s.max_total_tokens} or less fits on {n} GPU{'s' if n > 1 else ''}"
            f" (with max_input_tokens {s.max_input_tokens})"
        )
    if base.kv_dtype == "auto":
        fp8 = first_fit(with_(base, kv_dtype="fp8"), spec, wanted) or largest_fit(
            with_(base, kv_dtype="fp8"), relaxed, wanted
        )
        if fp8:
            ways.append(
                f"--kv-cache-dtype fp8 gives {fp8.limits.kv_cache_tokens} KV tokens"
                f" (max_total_tokens {fp8.limits.max_total_tokens})"
            )
    if spec.limits.max_batch_prefill_tokens and spec.limits.max_batch_prefill_tokens > rules.min_prefill:
        small = first_fit(with_(base, batch_tokens=rules.min_prefill), free_batch(spec), wanted)
        if small:
            ways.append(f"{rules.batch_name} {rules.min_prefill} fits max_total_tokens {wanted}")
    for more in range(n + 1, host.max_gpus + 1):
        if base.model.sharding_problem(more):
            continue
        bigger = with_(base, gpus=_profile_gpus(base.gpus[0], more))
        fit = first_fit(bigger, spec, wanted) or largest_fit(bigger, relaxed, wanted)
        if fit:
            ways.append(f"{more} GPUs fit it (use --gpus {more}, max_total_tokens {fit.limits.max_total_tokens})")
            break
    if not ways:
        limit = host.max_gpus
        usable = sum(cuda_total(g) for g in _profile_gpus(base.gpus[0], limit))
        # Keep a quarter for runtime, activations and KV cache; 4-bit GPTQ weighs ~0.52 bytes a parameter.
        params = usable * 0.75 / 0.52 / 1e9
        ways.append(f"a smaller model: about {params:.0f}B parameters at 4 bit fit on {limit} x {base.gpus[0].name}")
    return "; ".join(ways)


def free_batch(spec: DeploymentSpec) -> DeploymentSpec:
    return spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_batch_prefill_tokens": None})})
