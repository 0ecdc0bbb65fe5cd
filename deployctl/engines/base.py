"""What a serving engine owns: its image, port, health path, arguments and environment from a plan,
the variable it reads its API key from, its API dialect, its memory rule per release, its container's
security profile, its KV-cache dtype spelling, and what it says at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from deployctl.engines.dialects import Dialect
from deployctl.engines.memory import EngineStartup, MemoryRule, rule_for
from deployctl.engines.metrics import EngineMetrics
from deployctl.engines.security import shm_bytes
from deployctl.models import ModelFacts
from deployctl.models.quant import Quantization
from deployctl.plan import ChosenLimits, ContainerSecurity, EngineConfig


@dataclass(frozen=True)
class EngineInputs:
    """The plan's choices an engine turns into its command line (plain values, no I/O)."""

    image: str
    served_name: str
    quantization: Quantization  # what the checkpoint holds, and where it says so
    num_shard: int  # GPUs the model is split over (tensor parallel)
    limits: ChosenLimits
    p2p: bool  # whether the GPUs reach each other peer to peer
    # The settings the engine's memory rule assumed (its MemoryRule's KvBudget): flags with their values
    # (`--gpu-memory-utilization`, `--cuda-memory-fraction`) and environment variables (upper-case names).
    knobs: Mapping[str, str]
    kv_cache_dtype: str  # auto or fp8: the KV cache's storage type
    mount_model: bool  # whether the model directory is bind-mounted (a preset plans without weights)
    weight_bytes: int  # the weights every GPU loads, added up (what the container reads and holds)


class Engine(Protocol):
    """A serving engine, as the planner, the targets and the probes ask it (engines/tgi.py, engines/vllm.py)."""

    name: str  # the spec's `engine:` value
    title: str  # the name operators know it by
    default_image: str  # pinned; an unset `image:` in the spec means this one
    container_port: int  # where it listens inside its image
    health_path: str
    dialect: Dialect  # the HTTP API it speaks (engines/dialects.py)
    api_key_env: str  # the variable it reads its API key from (the key itself comes from .env)
    probe_tool: Literal["curl", "python3"]  # what its image carries for an in-container health check
    flags: tuple[str, ...]  # every flag deployctl may pass; tests check each against the engine's own list
    metrics: EngineMetrics | None  # what it serves on /metrics (engines/metrics.py); None where not known

    def model_id(self, served_name: str) -> str:
        """Give the path the model has inside the container."""
        ...

    def quantization_flag(self, q: Quantization) -> str | None:
        """Give the engine's flag value for the checkpoint's quantization, or None where it reads it itself."""
        ...

    def loads(self, model: ModelFacts) -> str | None:
        """Give why the pinned release cannot load this checkpoint (its quantization, say), or None when it can."""
        ...

    def memory_rule(self, image: str, *, unverified: bool = False) -> MemoryRule:
        """Give the start-up memory rule of the release `image` runs; InputError naming the supported releases
        for a tag that names none (with `unverified`, the newest rule marked as a guess)."""
        ...

    def kv_cache_dtype_knobs(self, kv_cache_dtype: str) -> dict[str, str]:
        """Give the flag that sets the KV cache's dtype, spelled the engine's way ({} for auto)."""
        ...

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        """Give the container's image, arguments, environment, port, health path, mount and shm size, and the
        facts later steps need (build it with `container`)."""
        ...

    def start_budget_s(self, weight_bytes: int) -> int:
        """Give how long a start (load weights, warm up) may take before a failing probe counts."""
        ...

    def container_security(self, weights: int, shards: int, shm: int) -> ContainerSecurity:
        """Give how its container runs (user, writable paths, limits) for `weights` bytes over `shards` GPUs."""
        ...

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        """Give the KV cache the engine says it allocated (the last report in its start-up `log`), or None.

        `request_tokens` is the plan's request length, for an engine that prints no concurrency of its own.
        """
        ...


class EngineDefaults:
    """What engines share unless they say otherwise: the memory rule picked by the image's tag, the KV-cache
    dtype flag spelled from `kv_cache_dtypes`, every checkpoint loadable, no start-up line read."""

    default_image: str
    memory_rules: tuple[MemoryRule, ...]  # one per range of releases, the pinned release's among them
    kv_cache_dtypes: Mapping[str, str] = {}  # deployctl's KV dtype -> the engine's `--kv-cache-dtype` value
    metrics: EngineMetrics | None = None  # no metric names known: monitoring renders no engine rules for it

    def memory_rule(self, image: str, *, unverified: bool = False) -> MemoryRule:
        return rule_for(self.memory_rules, image, unverified=unverified)

    def kv_cache_dtype_knobs(self, kv_cache_dtype: str) -> dict[str, str]:
        dtype = self.kv_cache_dtypes.get(kv_cache_dtype)
        return {"--kv-cache-dtype": dtype} if dtype else {}

    def loads(self, model: ModelFacts) -> str | None:
        return None

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return None


def container(
    engine: Engine, inputs: EngineInputs, *, args: list[str], env: dict[str, str], shm_size: str | None
) -> EngineConfig:
    """Give an engine's container for a plan: its own arguments, environment and shared memory, with the
    facts of the engine that later steps need resolved here, once."""
    return EngineConfig(
        kind=engine.name,
        image=inputs.image,
        args=args,
        env=env,
        container_port=engine.container_port,
        health_path=engine.health_path,
        model_mount=engine.model_id(inputs.served_name) if inputs.mount_model else None,
        shm_size=shm_size,
        dialect=engine.dialect.name,
        api_key_env=engine.api_key_env,
        probe_tool=engine.probe_tool,
        start_budget_s=engine.start_budget_s(inputs.weight_bytes),
        security=engine.container_security(inputs.weight_bytes, inputs.num_shard, shm_bytes(shm_size)),
    )
