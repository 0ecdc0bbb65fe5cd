"""What an engine's start-up memory rule takes and gives (in engines/<name>.py), as plain numbers.

These live with the engines, not the planner, so that a rule imports nothing of the planner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployctl.gpus.gpu import Gpu


@dataclass(frozen=True)
class StartupInput:
    """What an engine's start-up memory rule needs for one GPU, in bytes (plain numbers, no I/O)."""

    total: int  # the GPU's memory as CUDA reports it (torch.cuda.mem_get_info's total)
    used_by_others: int  # memory other processes hold on it
    weights: int  # the weight bytes this GPU loads
    shards: int
    batch_tokens: int  # TGI: max_batch_prefill_tokens; vLLM: max_num_batched_tokens
    max_seqs: int  # vLLM: max_num_seqs (its sampler warm-up); TGI: unused
    activation_bytes_per_token: int  # this GPU's activation peak per prefill token
    logits_bytes_per_seq: int  # one sequence's logits row as the sampler holds it
    kv_bytes_per_token: int  # this GPU's KV bytes per token at the chosen KV dtype
    memory_fraction: float  # TGI --cuda-memory-fraction / vLLM --gpu-memory-utilization


@dataclass(frozen=True)
class KvBudget:
    """What an engine's start-up rule gives the KV cache on one GPU, and how it got there."""

    kv_bytes: int
    kv_tokens: int
    runtime: int  # CUDA context, kernels and NCCL buffers
    activations: int  # the warm-up / profiling peak the rule subtracts
    held_back: int  # what the rule keeps free (TGI: wiggle room; vLLM: 1 - utilization)
    knobs: dict[str, str] = field(default_factory=dict)  # flags / env the rule's numbers assume


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
