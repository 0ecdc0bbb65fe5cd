"""vLLM's OpenAI-compatible server (`vllm serve`): arguments, environment, port, health path.

Flags, defaults and the image are read from vLLM v0.30's source (tests/data/vllm/serve-flags.md).
"""

from __future__ import annotations

from typing import Literal

from deployctl.engines.base import Dialect, EngineInputs
from deployctl.planner.types import EngineConfig

# docker/Dockerfile, target vllm-openai: ENTRYPOINT ["vllm", "serve"], so the command is the model and flags.
DEFAULT_IMAGE = "vllm/vllm-openai:v0.30.0"
CONTAINER_PORT = 8000  # `--port` default (entrypoints/openai/cli_args.py); the image sets no other
HEALTH_PATH = "/health"  # 200 once the engine is up (entrypoints/serve/instrumentator/health.py)
MODEL_ROOT = "/data/models"
# --gpu-memory-utilization default since PR #38284 (config/cache.py, CacheConfig.gpu_memory_utilization).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
# A sharded vLLM passes tensors between its worker processes through /dev/shm; Docker's 64 MB is too
# small (serve-flags.md, Docker image: "use --ipc=host or a large --shm-size (e.g. 8g+)").
SHARDED_SHM = "8gb"
FLAGS = (
    "--served-model-name",
    "--tensor-parallel-size",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--disable-custom-all-reduce",
    "--host",
    "--port",
    "--api-key",
)


def model_id(served_name: str) -> str:
    """Give the path the model has inside the container (mounted read-only there)."""
    return f"{MODEL_ROOT}/{served_name}"


class Vllm:
    name = "vllm"
    title = "vLLM"
    default_image = DEFAULT_IMAGE
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    dialect: Dialect = "openai"
    # The image is a Python install (ENTRYPOINT vllm serve); curl in it is not something to count on.
    probe_tool: Literal["curl", "python3"] = "python3"
    api_key_env = "VLLM_API_KEY"  # read when --api-key is absent (entrypoints/openai/cli_args.py)
    flags = FLAGS
    memory_rules = "deployctl.engines.vllm_rules"

    def model_id(self, served_name: str) -> str:
        return model_id(served_name)

    def gpu_memory_utilization(self, memory_fraction: float | None) -> float:
        """Give --gpu-memory-utilization: vLLM's default, lowered to what other processes leave free."""
        if memory_fraction is None:
            return DEFAULT_GPU_MEMORY_UTILIZATION
        return min(DEFAULT_GPU_MEMORY_UTILIZATION, memory_fraction)

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        limits = inputs.limits
        n = inputs.num_shard
        # No --quantization: for GPTQ and AWQ checkpoints vLLM reads quantization_config and picks the
        # Marlin kernels on sm_89 itself; an explicit `gptq` forced the slow exllama kernels in older releases.
        args = [
            model_id(inputs.served_name),
            "--served-model-name",
            inputs.served_name,
            "--tensor-parallel-size",
            str(n),
            "--max-model-len",
            str(limits.max_total_tokens),
            "--gpu-memory-utilization",
            f"{self.gpu_memory_utilization(inputs.memory_fraction):.2f}",
            "--max-num-seqs",
            str(limits.max_concurrent_requests),
            # The planner's prefill budget: the tokens one scheduler step may process.
            "--max-num-batched-tokens",
            str(limits.max_batch_prefill_tokens),
        ]
        if n > 1 and not inputs.p2p:
            # Custom all-reduce needs P2P; say so instead of relying on vLLM's own fallback.
            args.append("--disable-custom-all-reduce")
        env = {
            "HF_HUB_OFFLINE": "1",  # huggingface_hub never calls the Hub
            "TRANSFORMERS_OFFLINE": "1",  # transformers' own switch (vLLM does not read HF_HUB_OFFLINE for it)
            "VLLM_NO_USAGE_STATS": "1",  # no usage reports to stats.vllm.ai from an air-gapped site
        }
        return EngineConfig(
            kind=self.name,
            image=inputs.image,
            args=args,
            env=env,
            container_port=CONTAINER_PORT,
            health_path=HEALTH_PATH,
            model_mount=model_id(inputs.served_name) if inputs.mount_model else None,
            shm_size=SHARDED_SHM if n > 1 else None,
        )

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: vLLM profiles a forward pass and captures CUDA graphs
        # after loading (v1/worker/gpu_worker.py), so a minute more than TGI, then 10 s per GB.
        return 180 + int(weight_bytes / 1e9 * 10)


ENGINE = Vllm()
