"""The Plan: everything the renderer needs, and everything an operator needs to trust it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from deployctl.models import ModelFacts


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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class GpuBudget(_Frozen):
    """How one GPU's memory is spent, in bytes."""

    index: int
    uuid: str
    name: str
    total: int
    used_by_others: int
    runtime_reserve: int
    weights: int
    prefill_reserve: int
    kv_cache: int
    kv_tokens: int
    engine_reserve: int = 0  # what the engine's rule keeps free (TGI's wiggle room, vLLM's 1 - utilization)

    @property
    def free(self) -> int:
        return (
            self.total
            - self.used_by_others
            - self.runtime_reserve
            - self.weights
            - self.prefill_reserve
            - self.kv_cache
            - self.engine_reserve
        )


class ChosenLimits(_Frozen):
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    max_concurrent_requests: int
    kv_cache_tokens: int

    @property
    def full_length_requests(self) -> int:
        """How many requests of max_total_tokens fit in the KV cache at once."""
        return self.kv_cache_tokens // self.max_total_tokens


class EngineConfig(_Frozen):
    """The engine's container: image, launcher arguments, environment, port and health path."""

    kind: str
    image: str
    args: list[str]
    env: dict[str, str]
    container_port: int
    health_path: str
    model_mount: str | None
    shm_size: str | None


class Plan(_Frozen):
    deployctl_version: str
    name: str
    model: ModelFacts
    model_id: str
    served_name: str
    revision: str | None
    gpu_profile: str | None
    num_shard: int
    device_ids: list[str]
    p2p: bool
    gpus: list[GpuBudget]
    limits: ChosenLimits
    engine: EngineConfig
    bind: str
    port: int
    api_key: bool
    power_limit_watts: int | None
    decode_floor_ms: float | None
    reasons: list[str]
    warnings: list[str]
    engine_name: str = "tgi"
    kv_cache_dtype: str = "auto"
    memory_fraction: float = 1.0  # TGI --cuda-memory-fraction / vLLM --gpu-memory-utilization
    knobs: dict[str, str] = {}  # every flag or variable the memory rule assumed, with its value

    def canonical_json(self) -> str:
        """Give the plan as JSON with sorted keys: the same plan always gives the same bytes."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"

    def digest(self) -> str:
        """Give a short hash of the plan, stamped on the stack's labels."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]
