"""Each engine's start-up memory rule and the choices that go with it, selected by the spec's engine name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deployctl.engines import tgi_rules, vllm_rules
from deployctl.engines.memory import KvBudget, StartupInput
from deployctl.errors import InputError
from deployctl.gpus.gpu import Gpu, cuda_total

TGI_MAX_CONCURRENT = 128  # TGI launcher default for --max-concurrent-requests (shared/tgi/launcher-flags.md)


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
    first = vllm_rules.default_batch_tokens(cuda_total(gpu), gpu.name)
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
        max_seqs=lambda gpu: vllm_rules.default_max_seqs(cuda_total(gpu), gpu.name),
    ),
}


def rules_for(engine: str) -> EngineRules:
    """Give the memory rule of the named engine."""
    if engine not in RULES:
        raise InputError(f"engine: {engine!r} is not supported", f"allowed: {', '.join(RULES)}")
    return RULES[engine]
