"""TGI 3.3's own start-up memory rule: how many KV-cache tokens it allocates on one GPU. Pure math.

Read from TGI's source (`server/text_generation_server/models/flash_causal_lm.py`,
`FlashCausalLM.warmup()`, and `utils/import_utils.py`, `get_cuda_free_memory()`):

1. the shard loads its weights (CUDA context, kernels and NCCL buffers already live);
2. warm-up: one prefill of `max_batch_prefill_tokens` tokens; PyTorch's caching allocator keeps
   the peak, so `torch.cuda.mem_get_info()` reports what is free *below* that peak;
3. `free = max(0, free_after_warmup - (1 - cuda_memory_fraction) x total)`;
4. `num_blocks = int(free x TGI_WIGGLE_ROOM // block_bytes)` (+ the warm-up batch's own
   blocks, which it freed): the cache gets 90% of what is free, and CUDA graphs are captured
   afterwards out of the remaining 10%;
5. warm-up returns `num_blocks x BLOCK_SIZE` as the supported total tokens, and the v3 router
   refuses to start when `max_total_tokens` is above it (`backends/v3/src/lib.rs`).

Note that the wiggle room multiplies what is free after warm-up, not the total: design.md's
paraphrase `free - (1 - 0.90 x fraction) x total` keeps back 10% of the whole card instead.
"""

from __future__ import annotations

from deployctl.engines.memory import KvBudget, StartupInput

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


def prefill_budget_legal(max_batch_prefill_tokens: int, max_input_tokens: int) -> bool:
    """Whether the launcher accepts this prefill budget (any size with chunked prefill)."""
    return max_batch_prefill_tokens > 0 and (CHUNKED_PREFILL or max_batch_prefill_tokens >= max_input_tokens)
