"""The Plan and its parts: what every layer below ops passes around, and what an operator needs to trust it."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict

from deployctl.models import ModelFacts


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


class Scratch(_Frozen):
    """A writable in-memory folder (a tmpfs): where, how large, and why the engine needs it."""

    path: str
    size_bytes: int
    why: str


class ContainerSecurity(_Frozen):
    """How an engine's container runs: as whom, with which capabilities, writing where, within which limits."""

    user: str
    user_reason: str  # why this user: a chart says it beside runAsUser
    scratch: list[Scratch]
    env: dict[str, str] = {}
    cap_add: list[str] = []  # none today; each would carry its reason here
    pids_limit: int = 4096
    memory_bytes: int = 0

    @property
    def memory_limit(self) -> str:
        """Give the memory limit as Compose and Docker write it (whole MiB, e.g. '24576m')."""
        return f"{-(-self.memory_bytes // (1024 * 1024))}m"


class EngineConfig(_Frozen):
    """The engine's container (image, launcher arguments, environment, port, health path), and the facts
    of its engine that later steps need, resolved once when the plan is made (engines/<name>.py)."""

    kind: str  # the engine's name
    image: str
    args: list[str]
    env: dict[str, str]
    container_port: int
    health_path: str
    model_mount: str | None
    shm_size: str | None
    dialect: str  # the API it speaks, by name (engines/dialects.py): what the probes and the simulator use
    api_key_env: str  # the variable it reads its API key from (the key itself comes from .env)
    probe_tool: Literal["curl", "python3"]  # what its image carries for an in-container health check
    start_budget_s: int  # how long a start (load weights, warm up) may take before a failing probe counts
    security: ContainerSecurity  # user, writable paths, limits


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
    engine_release: str = ""  # the release range whose memory rule made this plan ("TGI 3.3.4-3.3.7")
    # Set when the image's release has no rule and the plan was asked for anyway (--unverified-engine):
    # the plan is a guess, and says so on every line.
    unverified_engine: str | None = None

    def canonical_json(self) -> str:
        """Give the plan as JSON with sorted keys: the same plan always gives the same bytes."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"

    def digest(self) -> str:
        """Give a short hash of the plan, stamped on the stack's labels."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]
