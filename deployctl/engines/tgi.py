"""Hugging Face text-generation-inference: launcher arguments, environment, port, health path."""

from __future__ import annotations

from typing import Literal

from deployctl.engines.base import Dialect, EngineInputs
from deployctl.planner.types import ChosenLimits, EngineConfig

DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.4"
CONTAINER_PORT = 80  # the official image sets PORT=80
HEALTH_PATH = "/health"
MODEL_ROOT = "/data/models"
# Every flag deployctl passes; tests check each against TGI's launcher (tests/data/tgi/launcher-flags.md).
FLAGS = (
    "--model-id",
    "--revision",
    "--quantize",
    "--num-shard",
    "--max-input-tokens",
    "--max-total-tokens",
    "--max-batch-prefill-tokens",
    "--max-concurrent-requests",
    "--cuda-memory-fraction",
    "--api-key",
    "--hostname",
)


def model_id(served_name: str) -> str:
    """Give the path the model has inside the container (mounted read-only there)."""
    return f"{MODEL_ROOT}/{served_name}"


def engine_config(
    image: str,
    served_name: str,
    quantize: str,
    num_shard: int,
    limits: ChosenLimits,
    p2p: bool,
    cuda_memory_fraction: float | None,
    mount_model: bool,
) -> EngineConfig:
    """Give TGI's container settings for a plan's choices."""
    # Docker sets HOSTNAME to the container id and the launcher reads --hostname from it, so
    # TGI would listen on the container's address only and a healthcheck on 127.0.0.1 would fail.
    args = ["--model-id", model_id(served_name), "--hostname", "0.0.0.0"]
    if quantize != "none":
        args += ["--quantize", quantize]
    args += [
        "--num-shard",
        str(num_shard),
        "--max-input-tokens",
        str(limits.max_input_tokens),
        "--max-total-tokens",
        str(limits.max_total_tokens),
        "--max-batch-prefill-tokens",
        str(limits.max_batch_prefill_tokens),
        "--max-concurrent-requests",
        str(limits.max_concurrent_requests),
    ]
    if cuda_memory_fraction is not None:
        args += ["--cuda-memory-fraction", f"{cuda_memory_fraction:.2f}"]
    env = {"HF_HUB_OFFLINE": "1"}
    if num_shard > 1 and not p2p:
        env["NCCL_P2P_DISABLE"] = "1"
    return EngineConfig(
        kind="tgi",
        image=image,
        args=args,
        env=env,
        container_port=CONTAINER_PORT,
        health_path=HEALTH_PATH,
        model_mount=model_id(served_name) if mount_model else None,
        shm_size="1gb" if num_shard > 1 else None,
    )


class Tgi:
    name = "tgi"
    title = "text-generation-inference (TGI)"
    default_image = DEFAULT_IMAGE
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    dialect: Dialect = "tgi"
    probe_tool: Literal["curl", "python3"] = "curl"  # the official image installs curl (Dockerfile, base stage)
    api_key_env = "API_KEY"  # the launcher's --api-key reads it (launcher/src/main.rs, `env` on the flag)
    flags = FLAGS
    memory_rules = "deployctl.engines.tgi_rules"

    def model_id(self, served_name: str) -> str:
        return model_id(served_name)

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        return engine_config(
            image=inputs.image,
            served_name=inputs.served_name,
            quantize=inputs.quantize,
            num_shard=inputs.num_shard,
            limits=inputs.limits,
            p2p=inputs.p2p,
            cuda_memory_fraction=inputs.memory_fraction,
            mount_model=inputs.mount_model,
        )

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: two minutes for the shards' start and warm-up, then
        # ten seconds per GB of weights (a slow disk reads about 100 MB/s).
        return 120 + int(weight_bytes / 1e9 * 10)


ENGINE = Tgi()
