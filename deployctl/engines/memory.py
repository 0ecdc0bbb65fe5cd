"""What an engine's start-up memory rule takes and gives (engines/<name>_rules.py), as plain numbers.

These live with the engines, not the planner, so that a rule imports nothing of the planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
class EngineStartup:
    """What an engine says it allocated at start-up (its own log line), in its own numbers."""

    kv_tokens: int  # tokens the KV cache holds (per replica: a tensor-parallel shard holds its heads of each)
    concurrency: float | None  # how many requests of `request_tokens` fit at once, as the engine says
    request_tokens: int | None  # the request length that concurrency is for (vLLM: max_model_len)
    line: str  # the log line(s) it was read from, as printed


def line_at(text: str, pos: int) -> str:
    """Give the whole line of `text` that holds position `pos`, stripped and cut to 300 characters."""
    end = text.find("\n", pos)
    return text[text.rfind("\n", 0, pos) + 1 : end if end >= 0 else len(text)].strip()[:300]
