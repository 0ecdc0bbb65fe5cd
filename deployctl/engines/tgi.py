"""Hugging Face text-generation-inference: everything deployctl knows of TGI.

Its image and port, launcher arguments and environment from a plan, its API (TGI's own routes), its
start-up memory rule per release, its container's security profile, the spelling of its KV-cache dtype
and quantization flags, and what it prints at start-up. Read from TGI's source at the tag the pinned
image runs (v3.3.7; the memory rule was read at v3.3.4 through v3.3.7); each constant names its file and
function.
"""

from __future__ import annotations

import re
from typing import Literal

from deployctl.engines import dialects
from deployctl.engines.base import EngineDefaults, EngineInputs, container
from deployctl.engines.memory import Asked, EngineStartup, KvBudget, MemoryRule, Releases, StartupInput, line_at
from deployctl.engines.metrics import EngineMetrics, Family, Latency
from deployctl.engines.security import ENGINE_PIDS, GIB, ceiling
from deployctl.gpus.gpu import Gpu
from deployctl.models import ModelFacts
from deployctl.models.quant import Quantization
from deployctl.plan import ContainerSecurity, EngineConfig, Scratch

# The last release (2025-12-18; TGI is in maintenance mode): its memory rule, flags and router checks are
# those of 3.3.4 (see MEMORY_RULES below), and its launcher counts GPUs right under
# NVIDIA_VISIBLE_DEVICES=void (nvidia-container-toolkit 1.18's CDI mode; launcher `num_cuda_devices`).
DEFAULT_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.7"
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


# Start-up memory rule, one per release range (the image's tag picks it: `MEMORY_RULES`).
#
# TGI 3.3.4 through 3.3.7, read at each tag (`git show v3.3.X:<path>`); between v3.3.4 and v3.3.7 there is
# no diff in `server/text_generation_server/models/flash_causal_lm.py`, `utils/import_utils.py`,
# `models/globals.py`, `models/__init__.py`, `layers/marlin/gptq.py`, `backends/v3/src/lib.rs` and
# `backends/v3/src/client/grpc_client.rs`; the launcher's `Args` are unchanged (its diff: a debug
# message's indentation and `num_cuda_devices` for NVIDIA_VISIBLE_DEVICES=all/void); the router's
# `backends/v3/src/main.rs` only adds `--max-image-fetch-size`.
#
# `FlashCausalLM.warmup()` (flash_causal_lm.py, v3.3.4 lines 1507-1565):
# 1. the shard has loaded its weights (CUDA context, kernels, NCCL buffers live); it allocates the
#    warm-up batch's own KV blocks and runs one prefill of `max_batch_prefill_tokens` tokens
#    ("Not enough memory to handle N prefill tokens" when that runs out of memory);
# 2. PyTorch's caching allocator keeps the prefill's peak, and then
#    `free_memory = get_free_memory(self.device, MEMORY_FRACTION * TGI_WIGGLE_ROOM)` (line 1556) with
#    `get_cuda_free_memory(device, fraction) = max(0, mem_get_info().free - (1 - fraction) x total)`
#    (`utils/import_utils.py` lines 13-17): the cache gets what is free after the warm-up minus
#    (1 - cuda_memory_fraction x 0.90) of the card's *total* - 10% of the card at the default fraction 1.0;
# 3. `num_blocks = int(kv_memory // total_cache_size) + batch_num_blocks` (the warm-up batch's blocks,
#    allocated before the measurement, are added back); `KV-cache blocks: N, size: BLOCK_SIZE` is logged;
# 4. CUDA graphs are captured afterwards out of the 10% kept back;
# 5. the router takes the minimum over shards and refuses `max_total_tokens` above it
#    (`backends/v3/src/lib.rs` `connect_backend`: "Not enough memory to handle `max_total_tokens={N}`"),
#    and `max_batch_prefill_tokens` above it (`backends/v3/src/main.rs`: "`max_batch_prefill_tokens`
#    must be <= `max_batch_total_tokens`").
# "90% of what is free" (`int((free_memory * TGI_WIGGLE_ROOM) // total_cache_size)`) is TGI 2.4's code
# (flash_causal_lm.py v2.4.0 line 1537); 3.0.0 changed it. 3.0.x (wiggle room 0.95) and 3.1-3.2 (0.93)
# have other defaults and no rule here.

MiB = 1024**2

# `models/globals.py` `TGI_WIGGLE_ROOM = float(os.getenv("TGI_WIGGLE_ROOM", "0.90"))` (v3.3.4 line 32, same
# through v3.3.7).
WIGGLE_ROOM = 0.90
# `models/globals.py` (v3.3.4 lines 38-46): BLOCK_SIZE 1 with flashinfer, 256 with flashdecoding, 16 with
# paged. The launcher (`launcher/src/main.rs` `resolve_attention`, v3.3.4 lines 131-200) picks flashinfer
# with prefix caching for head sizes 64, 128 and 256, and the fallback flashdecoding otherwise on
# compute capability 8.0+ (every GPU of deployctl's catalogue).
FLASHINFER_HEAD_SIZES = (64, 128, 256)
FLASHINFER_BLOCK = 1
FLASHDECODING_BLOCK = 256
# `layers/attention/flashinfer.py` `get_workspace` (v3.3.4 line 27, v3.3.7 line 42):
# `torch.empty(128 * 1024 * 1024, dtype=torch.uint8, device=device)`, allocated at the first attention
# call, i.e. during the warm-up prefill: it is "used" when the free memory is measured.
FLASHINFER_WORKSPACE = 128 * MiB
# Memory a shard holds before weights: CUDA context with PyTorch, flash-attention/Marlin kernels
# and cuBLAS workspaces. Estimate (0.5-0.8 GiB for a CUDA 12 PyTorch process with these kernels
# loaded, as nvidia-smi shows it); not measured with TGI on this machine: take the upper end.
CUDA_CONTEXT = 768 * MiB
# NCCL's communicator buffers per rank when sharded (NCCL_BUFFSIZE 4 MiB x channels x peers
# plus its proxy buffers; estimate, rounded up).
NCCL_BUFFERS = 256 * MiB
# Prefill logprobs are off by default since TGI 3.0 (`models/globals.py` `REQUEST_LOGPROBS` "0";
# `flash_causal_lm.py` `from_pb`, v3.3.4 lines 283-286, drops the router's `prefill_logprobs`): the
# warm-up computes logits for each request's last token only, so its peak is the decoder layers'
# activations, not a max_batch_prefill_tokens x vocabulary logits tensor. deployctl never passes
# `--enable-prefill-logprobs`.
PREFILL_LOGPROBS = False
# Chunked prefill is on by default (`models/globals.py` `PREFILL_CHUNKING` "1"; `models/model.py` keeps it
# with flashinfer/flashdecoding and no speculation): the router then accepts a `max_batch_prefill_tokens`
# below `max_input_tokens` (`backends/v3/src/main.rs`, `&& !support_chunking`).
CHUNKED_PREFILL = True
# The smallest prefill budget deployctl chooses (one chunk per forward; below this the time to
# first token of long prompts grows with little memory saved).
MIN_PREFILL = 2048
# The model types TGI 3.3.4-3.3.7 has a model of its own for (`models/__init__.py` `ModelType`, identical at
# both tags). Anything else falls through to transformers' AutoModel, which refuses GPTQ and AWQ first
# (v3.3.4 lines 1725-1730: "gptq quantization is not supported for AutoModel", "awq quantization is not
# supported for AutoModel") - Qwen3 and Qwen3-MoE among them (they exist only under backends/gaudi/).
MODEL_TYPES = frozenset(
    [
        "deepseek_v2",
        "deepseek_v3",
        "idefics2",
        "idefics3",
        "llava_next",
        "llama",
        "llama4",
        "phi3",
        "granite",
        "gemma",
        "paligemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "cohere",
        "dbrx",
        "mamba",
        "mistral",
        "mixtral",
        "gpt_bigcode",
        "phi",
        "phimoe",
        "baichuan",
        "falcon",
        "starcoder2",
        "qwen2",
        "qwen2_vl",
        "qwen2_5_vl",
        "opt",
        "t5",
        "galactica",
        "santacoder",
        "bloom",
        "mpt",
        "gpt2",
        "gpt_neox",
        "gptj",
        "idefics",
        "mllama",
    ]
)


def runtime_bytes(shards: int) -> int:
    """Give what a TGI shard holds besides weights, activations and KV cache."""
    return CUDA_CONTEXT + (NCCL_BUFFERS if shards > 1 else 0)


def block_size(head_dim: int) -> int:
    """Give TGI's KV block size in tokens for this head size (its attention backend's)."""
    return FLASHINFER_BLOCK if head_dim in FLASHINFER_HEAD_SIZES else FLASHDECODING_BLOCK


def startup_kv(inp: StartupInput) -> KvBudget:
    """Give the KV cache TGI 3.3.4-3.3.7 allocates on one GPU at start-up (its warmup() arithmetic)."""
    runtime = runtime_bytes(inp.shards) + FLASHINFER_WORKSPACE
    activations = inp.batch_tokens * inp.activation_bytes_per_token
    before_warmup = inp.total - inp.used_by_others - runtime - inp.weights
    free_after_warmup = before_warmup - activations
    kv_bytes = max(0.0, free_after_warmup - (1 - inp.memory_fraction * WIGGLE_ROOM) * inp.total)
    bs = block_size(inp.head_dim)
    block = bs * inp.kv_bytes_per_token
    blocks = int(kv_bytes // block)
    knobs = {"--max-batch-prefill-tokens": str(inp.batch_tokens)}
    if inp.memory_fraction < 1:
        knobs["--cuda-memory-fraction"] = f"{inp.memory_fraction:.2f}"
    return KvBudget(
        kv_bytes=blocks * block,
        kv_tokens=blocks * bs,
        runtime=runtime,
        activations=activations,
        held_back=int(max(0, free_after_warmup) - blocks * block),
        knobs=knobs,
        block_size=bs,
        block_bytes=block,
        warmup_room=max(0, free_after_warmup),
    )


def refusal(asked: Asked, kv: KvBudget) -> str | None:
    """Give why TGI 3.3 refuses to start with these limits (the router's and the warm-up's checks), or None."""
    if asked.max_input_tokens >= asked.max_total_tokens:
        return "`max_input_tokens` must be < `max_total_tokens`"
    # The router's warm-up batch (`backends/v3/src/client/grpc_client.rs` `warmup`): requests of
    # min(max_input_tokens, what is left of the prefill budget) tokens until the budget is reached, each
    # with max_new_tokens = max_total_tokens - its prompt, i.e. max_total_tokens - 1 KV tokens
    # (`flash_causal_lm.py` `from_pb`), allocated before the prefill out of the memory free then.
    requests = -(-asked.prefill_tokens // min(asked.max_input_tokens, asked.prefill_tokens))
    blocks = -(-(asked.max_total_tokens - 1) // kv.block_size)
    if requests * blocks * kv.block_bytes > kv.warmup_room:
        return f"Not enough memory to handle {asked.prefill_tokens} prefill tokens (the warm-up batch's KV)"
    if asked.max_total_tokens > kv.kv_tokens:
        return f"Not enough memory to handle `max_total_tokens={asked.max_total_tokens}` ({kv.kv_tokens} KV tokens)"
    if not CHUNKED_PREFILL and asked.prefill_tokens < asked.max_input_tokens:
        return "`max_batch_prefill_tokens` must be >= `max_input_tokens`"
    if asked.prefill_tokens > kv.kv_tokens:
        return f"`max_batch_prefill_tokens` must be <= `max_batch_total_tokens` ({kv.kv_tokens})"
    return None


def loads(model: ModelFacts) -> str | None:
    """Give why TGI 3.3 does not load this checkpoint, or None when it does."""
    q = model.quantization
    if model.model_type not in MODEL_TYPES and q.method in ("gptq", "awq"):
        return (
            f"TGI 3.3 has no {model.model_type} model, and its transformers fallback refuses {q.method} checkpoints"
            f' ("{q.method} quantization is not supported for AutoModel", models/__init__.py)'
        )
    return None


def scales_whole(q: Quantization) -> bool:
    """Whether TGI keeps a row-parallel layer's scales and zeros whole on every GPU.

    `layers/marlin/gptq.py` `GPTQMarlinWeightsLoader.get_weights_row` (GPTQ and AWQ, v3.3.4 lines 195-235)
    and `layers/compressed_tensors/wna16_int.py` `WNA16IntLoader.get_weights_row` (lines 148-188):
    `if self.desc_act or self.groupsize == -1: scales = weights.get_tensor(...)` (whole), else sharded;
    compressed-tensors' desc_act is `actorder == ActivationOrdering.GROUP`.
    """
    if q.method == "none":
        return False
    act_order = q.actorder == "group" if q.method == "compressed-tensors" else bool(q.desc_act)
    return act_order or q.group_size is None


MAX_CONCURRENT = 128  # TGI launcher default for --max-concurrent-requests (shared/tgi/launcher-flags.md)


def batch_candidates(gpu: Gpu, max_input: int) -> list[int]:
    # Chunked prefill: any budget is legal; 4096 keeps prompts to one or two chunks, 2048 frees memory.
    return [4096, MIN_PREFILL]


# Every release range deployctl has a rule for, oldest first; the image's tag picks one (engines/memory.py
# rule_for) and an image whose tag names none is refused (or planned as a guess, --unverified-engine).
MEMORY_RULES = (
    MemoryRule(
        title="TGI 3.3.4-3.3.7",
        releases=Releases(first=(3, 3, 4), before=(3, 3, 8), read=("3.3.4", "3.3.5", "3.3.6", "3.3.7")),
        startup_kv=startup_kv,
        refusal=refusal,
        scales_whole=scales_whole,
        tied_copy=True,
        batch_name="max_batch_prefill_tokens",
        batch_candidates=batch_candidates,
        # TGI measures free memory itself (torch.cuda.mem_get_info), so others' use is already
        # excluded; a fraction below 1 would take it off a second time.
        fraction=lambda total, others, shards: 1.0,
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


# -- /metrics (TGI 3.3.4) -------------------------------------------------------------------------------------------
def tgi_duration_buckets() -> tuple[float, ...]:
    """Give TGI's buckets for every histogram named *duration (router/src/server.rs `start`, v3.3.4).

    "Duration buckets": 35 edges of a geometric series, 0.0001 s times 1.5 per step, computed in f64
    as TGI does (the same doubles give the same `le` strings).
    """
    edges, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        edges.append(value)
    return tuple(edges)


_TGI_SERVER = "router/src/server.rs (TGI v3.3.4)"
_TGI_BACKEND = "backends/v3/src/backend.rs (TGI v3.3.4)"
TGI_DURATION_BUCKETS = tgi_duration_buckets()
# tgi_request_failure's `err` values (v3.3.4): overloaded and validation (infer/mod.rs), template,
# incomplete (infer/mod.rs, server.rs), dropped (queue.rs, backend.rs), generation (backend.rs).
# Validation and template errors are the client's request; the rest are the server's.
TGI_SERVER_ERRORS = ("overloaded", "incomplete", "dropped", "generation")

METRICS = EngineMetrics(
    engine="tgi",
    version="3.3.4",
    waiting=Family("tgi_queue_size", "gauge", "backends/v3/src/queue.rs queue_task (TGI v3.3.4)"),
    running=Family("tgi_batch_current_size", "gauge", f"{_TGI_BACKEND} batching_task"),
    # The running batch's CachedBatch.max_tokens: for flash (paged) models num_blocks x BLOCK_SIZE, the KV
    # blocks it holds (server/.../flash_causal_lm.py FlashCausalLMBatch.to_pb, v3.3.4), of the pool the
    # router sized after warm-up (tgi_batch_max_total_tokens).
    kv_used=Family("tgi_batch_current_max_tokens", "gauge", f"{_TGI_BACKEND} batching_task"),
    kv_capacity=Family("tgi_batch_max_total_tokens", "gauge", "backends/v3/src/lib.rs connect_backend (TGI v3.3.4)"),
    preemptions=None,  # TGI's router queues; it does not evict a running request's KV cache
    finished=Family("tgi_request_count", "counter", f"{_TGI_SERVER} generate_internal, generate_stream_internal"),
    errors=Family("tgi_request_failure", "counter", "router/src/infer/mod.rs, backends/v3/src/* (TGI v3.3.4)"),
    errors_matcher='err=~"' + "|".join(TGI_SERVER_ERRORS) + '"',
    generated_tokens=Family("tgi_request_generated_tokens_sum", "histogram", f"{_TGI_SERVER} generate_internal"),
    prompt_tokens=Family("tgi_request_input_length_sum", "histogram", "router/src/validation.rs (TGI v3.3.4)"),
    # TGI 3.3.4 records no time-to-first-token histogram; the time a request waits in the queue before
    # its prefill is part of it, so an SLO missed there is missed for certain (a lower bound).
    ttft=Latency(
        Family("tgi_request_queue_duration", "histogram", f"{_TGI_SERVER} generate_internal"),
        TGI_DURATION_BUCKETS,
        exact=False,
        note="TGI records no first-token histogram: the queue time before prefill, a lower bound of TTFT",
    ),
    # Per request: (inference time) / (generated tokens), the mean gap, not each gap.
    itl=Latency(
        Family("tgi_request_mean_time_per_token_duration", "histogram", f"{_TGI_SERVER} generate_internal"),
        TGI_DURATION_BUCKETS,
        exact=False,
        note="TGI records each request's mean time per token, not each gap",
    ),
    e2e=Latency(Family("tgi_request_duration", "histogram", f"{_TGI_SERVER} generate_internal"), TGI_DURATION_BUCKETS),
    queue=Latency(
        Family("tgi_request_queue_duration", "histogram", f"{_TGI_SERVER} generate_internal"), TGI_DURATION_BUCKETS
    ),
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
    metrics: EngineMetrics | None = METRICS
    memory_rules = MEMORY_RULES
    kv_cache_dtypes = KV_CACHE_DTYPES

    model_id = staticmethod(model_id)
    quantization_flag = staticmethod(quantize_flag)
    loads = staticmethod(loads)
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
