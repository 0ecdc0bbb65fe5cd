"""What a serving engine owns: its image, port, health path, arguments and environment from a plan,
the variable it reads its API key from, its API dialect for the probes, and its memory rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # the planner imports this module: only types flow back
    from collections.abc import Mapping

    from deployctl.engines.memory import EngineStartup
    from deployctl.models.quant import Quantization
    from deployctl.planner.types import ChosenLimits, EngineConfig

# The HTTP API the probes and the simulator speak: TGI's own routes, or OpenAI's (vLLM).
Dialect = Literal["tgi", "openai"]


@dataclass(frozen=True)
class EngineInputs:
    """The plan's choices an engine turns into its command line (plain values, no I/O)."""

    image: str
    served_name: str
    quantization: Quantization  # what the checkpoint holds, and where it says so
    num_shard: int  # GPUs the model is split over (tensor parallel)
    limits: ChosenLimits
    p2p: bool  # whether the GPUs reach each other peer to peer
    # The settings the engine's memory rule assumed (engines/<name>_rules.py): flags with their values
    # (`--gpu-memory-utilization`, `--cuda-memory-fraction`) and environment variables (upper-case names).
    knobs: Mapping[str, str]
    kv_cache_dtype: str  # auto or fp8: the KV cache's storage type
    mount_model: bool  # whether the model directory is bind-mounted (a preset plans without weights)


class Engine(Protocol):
    name: str  # the spec's `engine:` value
    title: str  # the name operators know it by
    default_image: str  # pinned; an unset `image:` in the spec means this one
    container_port: int  # where it listens inside its image
    health_path: str
    dialect: Dialect
    api_key_env: str  # the variable it reads its API key from (the key itself comes from .env)
    probe_tool: Literal["curl", "python3"]  # what its image carries for an in-container health check
    flags: tuple[str, ...]  # every flag deployctl may pass; tests check each against the engine's own list
    # The module holding the engine's start-up memory rule (engines/<name>_rules.py): the planner asks it
    # what the engine reserves and what it gives the KV cache.
    memory_rules: str

    def model_id(self, served_name: str) -> str:
        """Give the path the model has inside the container."""
        ...

    def quantization_flag(self, q: Quantization) -> str | None:
        """Give the engine's flag value for the checkpoint's quantization, or None where it reads it itself."""
        ...

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        """Give the container's image, arguments, environment, port, health path, mount and shm size."""
        ...

    def start_budget_s(self, weight_bytes: int) -> int:
        """Give how long a start (load weights, warm up) may take before a failing probe counts."""
        ...

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        """Give the KV cache the engine says it allocated (its start-up log line), or None when `log` has none."""
        ...
