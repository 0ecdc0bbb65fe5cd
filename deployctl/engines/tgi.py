"""Hugging Face text-generation-inference: launcher arguments, environment, port, health path."""

from __future__ import annotations

from deployctl.planner.types import ChosenLimits, EngineConfig

CONTAINER_PORT = 80  # the official image sets PORT=80
HEALTH_PATH = "/health"
MODEL_ROOT = "/data/models"
# Every flag deployctl passes; tests check each against TGI's launcher (shared/tgi/launcher-flags.md).
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
    "--kv-cache-dtype",
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
    kv_cache_dtype: str | None = None,
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
    if kv_cache_dtype is not None:
        args += ["--kv-cache-dtype", kv_cache_dtype]
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
