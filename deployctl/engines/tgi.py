"""Hugging Face text-generation-inference: launcher arguments, environment, port, health path."""

from __future__ import annotations

import re
from typing import Literal

from deployctl.engines.base import Dialect, EngineInputs
from deployctl.engines.memory import EngineStartup, line_at
from deployctl.models.quant import Quantization
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
    "--kv-cache-dtype",
    "--api-key",
    "--hostname",
)


def quantize_flag(q: Quantization) -> str | None:
    """Give TGI's --quantize value, or None where TGI reads the method from config.json itself.

    TGI 3.3 `server/text_generation_server/models/__init__.py` `get_model()` takes `quant_method`
    (gptq, awq, compressed-tensors) from config.json's quantization_config when --quantize is absent;
    a GPTQModel/AutoGPTQ `quantize_config.json` alone is read only once --quantize gptq says so
    (`utils/quantization.py` `_get_gptq_params`).
    """
    if q.method == "none" or q.source == "config.json":
        return None
    return q.method


def model_id(served_name: str) -> str:
    """Give the path the model has inside the container (mounted read-only there)."""
    return f"{MODEL_ROOT}/{served_name}"


def engine_config(
    image: str,
    served_name: str,
    quantize: str | None,
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
    if quantize is not None:
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

    def quantization_flag(self, q: Quantization) -> str | None:
        return quantize_flag(q)

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        return engine_config(
            image=inputs.image,
            served_name=inputs.served_name,
            quantize=quantize_flag(inputs.quantization),
            num_shard=inputs.num_shard,
            limits=inputs.limits,
            p2p=inputs.p2p,
            cuda_memory_fraction=(
                float(inputs.knobs["--cuda-memory-fraction"]) if "--cuda-memory-fraction" in inputs.knobs else None
            ),
            mount_model=inputs.mount_model,
            # TGI's launcher spells fp8 KV as fp8_e4m3fn (launcher/src/main.rs, KVCacheDtype).
            kv_cache_dtype="fp8_e4m3fn" if inputs.kv_cache_dtype == "fp8" else None,
        )

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: two minutes for the shards' start and warm-up, then
        # ten seconds per GB of weights (a slow disk reads about 100 MB/s).
        return 120 + int(weight_bytes / 1e9 * 10)

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return parse_startup_log(log, request_tokens)


# A shard reports the KV cache it allocated after its warm-up (server/text_generation_server/models/
# flash_causal_lm.py `FlashCausalLM.warmup`, TGI v3.3.4: `log_master(logger.info, f"KV-cache blocks:
# {num_blocks}, size: {BLOCK_SIZE}")`, rank 0 only); the launcher prints the shard's message in its own
# log. The router then says what the batch may hold (backends/v3/src/lib.rs `connect_backend`:
# "Setting max batch total tokens to {max_batch_total_tokens}").
KV_BLOCKS_LINE = re.compile(r"KV-cache blocks: (\d+), size: (\d+)")


def parse_startup_log(log: str, request_tokens: int | None = None) -> EngineStartup | None:
    """Give the KV cache TGI reported at start-up (the last report in `log`), or None when it printed none.

    TGI prints no concurrency: with `request_tokens` (the plan's max_total_tokens) it is worked out the
    way vLLM prints it, KV tokens / request length.
    """
    blocks = list(KV_BLOCKS_LINE.finditer(log))
    if not blocks:
        return None
    found = blocks[-1]
    tokens = int(found.group(1)) * int(found.group(2))
    return EngineStartup(
        kv_tokens=tokens,
        concurrency=round(tokens / request_tokens, 2) if request_tokens else None,
        request_tokens=request_tokens,
        line=line_at(log, found.start()),
    )


ENGINE = Tgi()
