"""Hugging Face text-generation-inference: everything deployctl knows of TGI.

Its image and port, launcher arguments and environment from a plan, its API (TGI's own routes), its
start-up memory rule per release, its container's security profile, the spelling of its KV-cache dtype
and quantization flags, and what it prints at start-up. Read from TGI's source at the tag the pinned
image runs (v3.3.4); each constant names its file and function.
"""

from __future__ import annotations

import re
from typing import Literal

from deployctl.engines import dialects
from deployctl.engines.base import EngineDefaults, EngineInputs, container
from deployctl.engines.memory import EngineStartup, KvBudget, MemoryRule, Releases, StartupInput, line_at
from deployctl.engines.security import ENGINE_PIDS, GIB, ceiling
from deployctl.gpus.gpu import Gpu
from deployctl.models.quant import Quantization
from deployctl.plan import ContainerSecurity, EngineConfig, Scratch

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


# Least privilege: what the image writes and which user it runs as, read from its build files
# (engines/security.py has the rule every engine's container follows).
# TGI 3.3 (huggingface/text-generation-inference: Dockerfile, tgi-entrypoint.sh)
#   - No USER line: runs as root. It cannot run as another uid since 3.1: the launcher links
#     libpython from /root/.local/share/uv (uv-managed Python) and /root is mode 0700
#     (text-generation-inference issue #3082). So TGI keeps uid 0, with every capability dropped.
#   - ENV HF_HOME=/data, PORT=80, WORKDIR /usr/src. Writes: /data (hub cache and lock files;
#     the model is bind-mounted read-only below it, at /data/models/<name>), /tmp (the launcher's
#     shard sockets /tmp/text-generation-server-<rank>, torch inductor's /tmp/torchinductor_root),
#     /root/.cache (torch extensions, outlines) and /root/.triton (Triton's kernel cache).
#   - tgi-entrypoint.sh runs `ldconfig` first and goes on when it fails ("not a big deal"): with a
#     read-only root it fails, and that is the only write outside the paths above.


def container_security(weights: int, shards: int, shm: int) -> ContainerSecurity:
    """Give TGI's container settings for a model of `weights` bytes over `shards` GPUs."""
    scratch = [
        Scratch(path="/tmp", size_bytes=2 * GIB, why="shard sockets, torch inductor cache"),
        Scratch(
            path="/data", size_bytes=1 * GIB, why="HF_HOME: hub cache and locks; the model is mounted read-only below"
        ),
        Scratch(path="/root/.cache", size_bytes=1 * GIB, why="torch extensions, outlines"),
        Scratch(path="/root/.triton", size_bytes=1 * GIB, why="Triton kernel cache"),
    ]
    return ContainerSecurity(
        user="0:0",
        user_reason="TGI >= 3.1 runs only as root (its Python lives under /root, issue #3082), with every capability dropped.",
        scratch=scratch,
        pids_limit=ENGINE_PIDS,
        memory_bytes=ceiling(weights, shards, scratch, shm),
    )


# Start-up memory rule, TGI 3.x.
# TGI 3.3's own start-up memory rule: how many KV-cache tokens it allocates on one GPU. Pure math.
#
# Read from TGI's source (`server/text_generation_server/models/flash_causal_lm.py`,
# `FlashCausalLM.warmup()`, and `utils/import_utils.py`, `get_cuda_free_memory()`):
#
# 1. the shard loads its weights (CUDA context, kernels and NCCL buffers already live);
# 2. warm-up: one prefill of `max_batch_prefill_tokens` tokens; PyTorch's caching allocator keeps
#    the peak, so `torch.cuda.mem_get_info()` reports what is free *below* that peak;
# 3. `free = max(0, free_after_warmup - (1 - cuda_memory_fraction) x total)`;
# 4. `num_blocks = int(free x TGI_WIGGLE_ROOM // block_bytes)` (+ the warm-up batch's own
#    blocks, which it freed): the cache gets 90% of what is free, and CUDA graphs are captured
#    afterwards out of the remaining 10%;
# 5. warm-up returns `num_blocks x BLOCK_SIZE` as the supported total tokens, and the v3 router
#    refuses to start when `max_total_tokens` is above it (`backends/v3/src/lib.rs`).
#
# Note that the wiggle room multiplies what is free after warm-up, not the total: design.md's
# paraphrase `free - (1 - 0.90 x fraction) x total` keeps back 10% of the whole card instead.

MiB = 1024**2

# `models/globals.py`: TGI_WIGGLE_ROOM = float(os.getenv("TGI_WIGGLE_ROOM", "0.90")).
WIGGLE_ROOM = 0.90
# `models/globals.py`: BLOCK_SIZE is 1 with the flashinfer attention TGI 3.x uses on CUDA
# (prefix caching on), 256 with flashdecoding, 16 with paged attention.
BLOCK_SIZE = 1
# Memory a shard holds before weights: CUDA context with PyTorch, flash-attention/Marlin kernels
# and cuBLAS workspaces. Estimate (0.5-0.8 GiB for a CUDA 12 PyTorch process with these kernels
# loaded, as nvidia-smi shows it); not measured with TGI on this machine: take the upper end.
CUDA_CONTEXT = 768 * MiB
# NCCL's communicator buffers per rank when sharded (NCCL_BUFFSIZE 4 MiB x channels x peers
# plus its proxy buffers; estimate, rounded up).
NCCL_BUFFERS = 256 * MiB
# Prefill logprobs are off by default since TGI 3.0 (`--enable-prefill-logprobs` turns them on;
# maintainers in huggingface/text-generation-inference#3070): the warm-up then computes logits
# for each request's last token only, so its peak is the decoder layers' activations, not a
# max_batch_prefill_tokens x vocabulary logits tensor. deployctl never passes that flag.
PREFILL_LOGPROBS = False
# Chunked prefill is on by default in TGI 3.x for the flash-attention models deployctl
# serves (`utils/prefill_chunking.py` `get_support_chunking`); the launcher then accepts a
# `max_batch_prefill_tokens` below `max_input_tokens` (`launcher/src/main.rs`).
CHUNKED_PREFILL = True
# The smallest prefill budget deployctl chooses (one chunk per forward; below this the time to
# first token of long prompts grows with little memory saved).
MIN_PREFILL = 2048


def runtime_bytes(shards: int) -> int:
    """Give what a TGI shard holds besides weights, activations and KV cache."""
    return CUDA_CONTEXT + (NCCL_BUFFERS if shards > 1 else 0)


def startup_kv(inp: StartupInput) -> KvBudget:
    """Give the KV cache TGI allocates on one GPU at start-up (its warmup() arithmetic)."""
    runtime = runtime_bytes(inp.shards)
    activations = inp.batch_tokens * inp.activation_bytes_per_token
    free_after_warmup = inp.total - inp.used_by_others - runtime - inp.weights - activations
    free = max(0.0, free_after_warmup - (1 - inp.memory_fraction) * inp.total)
    block = BLOCK_SIZE * inp.kv_bytes_per_token
    blocks = int(free * WIGGLE_ROOM // block)
    knobs = {"--max-batch-prefill-tokens": str(inp.batch_tokens)}
    if inp.memory_fraction < 1:
        knobs["--cuda-memory-fraction"] = f"{inp.memory_fraction:.2f}"
    return KvBudget(
        kv_bytes=blocks * block,
        kv_tokens=blocks * BLOCK_SIZE,
        runtime=runtime,
        activations=activations,
        held_back=int(max(0, free_after_warmup) - blocks * block),
        knobs=knobs,
    )


def accepts(max_total_tokens: int, kv_tokens: int) -> bool:
    """Whether TGI's router starts with this `max_total_tokens` and this many KV tokens."""
    return 0 < max_total_tokens <= kv_tokens


MAX_CONCURRENT = 128  # TGI launcher default for --max-concurrent-requests (shared/tgi/launcher-flags.md)


def batch_candidates(gpu: Gpu, max_input: int) -> list[int]:
    # Chunked prefill: any budget is legal; 4096 keeps prompts to one or two chunks, 2048 frees memory.
    return [4096, MIN_PREFILL]


# Every release range deployctl has a rule for; the image's tag picks one (engines/memory.py rule_for).
MEMORY_RULES = (
    MemoryRule(
        releases=Releases(first=(3, 0), before=(4, 0)),
        startup_kv=startup_kv,
        accepts=accepts,
        tied_copy=True,
        batch_name="max_batch_prefill_tokens",
        batch_candidates=batch_candidates,
        # TGI measures free memory itself (torch.cuda.mem_get_info), so others' use is already
        # excluded; a fraction below 1 would take it off a second time.
        fraction=lambda total, others: 1.0,
        max_seqs=lambda gpu: MAX_CONCURRENT,
        min_prefill=MIN_PREFILL,
        assumed={"TGI_WIGGLE_ROOM": f"{WIGGLE_ROOM:.2f} (default, not set)"},
    ),
)
# The launcher's spelling of the KV-cache dtypes deployctl plans for (launcher/src/main.rs KVCacheDtype;
# tests/data/tgi/launcher-flags.md).
KV_CACHE_DTYPES = {"fp8": "fp8_e4m3fn"}


def launch_args(inputs: EngineInputs) -> list[str]:
    """Give the launcher's arguments for a plan's choices."""
    limits = inputs.limits
    # Docker sets HOSTNAME to the container id and the launcher reads --hostname from it, so
    # TGI would listen on the container's address only and a healthcheck on 127.0.0.1 would fail.
    args = ["--model-id", model_id(inputs.served_name), "--hostname", "0.0.0.0"]
    if (quantize := quantize_flag(inputs.quantization)) is not None:
        args += ["--quantize", quantize]
    args += [
        "--num-shard",
        str(inputs.num_shard),
        "--max-input-tokens",
        str(limits.max_input_tokens),
        "--max-total-tokens",
        str(limits.max_total_tokens),
        "--max-batch-prefill-tokens",
        str(limits.max_batch_prefill_tokens),
        "--max-concurrent-requests",
        str(limits.max_concurrent_requests),
    ]
    if "--cuda-memory-fraction" in inputs.knobs:
        args += ["--cuda-memory-fraction", f"{float(inputs.knobs['--cuda-memory-fraction']):.2f}"]
    if (dtype := KV_CACHE_DTYPES.get(inputs.kv_cache_dtype)) is not None:
        args += ["--kv-cache-dtype", dtype]
    return args


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


class Tgi(EngineDefaults):
    name = "tgi"
    title = "text-generation-inference (TGI)"
    default_image = DEFAULT_IMAGE
    container_port = CONTAINER_PORT
    health_path = HEALTH_PATH
    dialect: dialects.Dialect = dialects.TGI
    probe_tool: Literal["curl", "python3"] = "curl"  # the official image installs curl (Dockerfile, base stage)
    api_key_env = "API_KEY"  # the launcher's --api-key reads it (launcher/src/main.rs, `env` on the flag)
    flags: tuple[str, ...] = FLAGS
    memory_rules = MEMORY_RULES
    kv_cache_dtypes = KV_CACHE_DTYPES

    model_id = staticmethod(model_id)
    quantization_flag = staticmethod(quantize_flag)
    container_security = staticmethod(container_security)

    def configure(self, inputs: EngineInputs) -> EngineConfig:
        env = {"HF_HUB_OFFLINE": "1"}
        if inputs.num_shard > 1 and not inputs.p2p:
            env["NCCL_P2P_DISABLE"] = "1"
        shm = "1gb" if inputs.num_shard > 1 else None
        return container(self, inputs, args=launch_args(inputs), env=env, shm_size=shm)

    def start_budget_s(self, weight_bytes: int) -> int:
        # An allowance, not a measurement: two minutes for the shards' start and warm-up, then
        # ten seconds per GB of weights (a slow disk reads about 100 MB/s).
        return 120 + int(weight_bytes / 1e9 * 10)

    def startup_report(self, log: str, request_tokens: int) -> EngineStartup | None:
        return parse_startup_log(log, request_tokens)


ENGINE = Tgi()
