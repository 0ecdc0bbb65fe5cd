"""vLLM's own start-up memory rule: how many KV-cache tokens it allocates on one GPU. Pure math.

Read from vLLM's source (`vllm/v1/worker/gpu_worker.py` `init_device` and
`determine_available_memory`, `vllm/utils/mem_utils.py` `memory_profiling`,
`vllm/v1/core/kv_cache_utils.py` `_check_enough_kv_cache_memory`; summarised in
shared/vllm/serve-flags.md "Memory at startup"):

1. at start, `requested = gpu_memory_utilization x total`; if less than that is free (other
   processes), it refuses to start;
2. it loads the weights, then profiles one dummy forward of `max_num_batched_tokens` tokens and
   a sampler run over `max_num_seqs` sequences: the peak of PyTorch's allocations and the
   growth of non-PyTorch memory (NCCL, cuBLAS) are measured;
3. `KV = requested - (weights + peak activations + non-torch growth)`; CUDA graphs are captured
   afterwards, out of `1 - gpu_memory_utilization` (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0,
   which deployctl sets so the rule does not depend on the release);
4. the cache is cut into blocks of 16 tokens; it refuses to start when one `max_model_len`
   sequence does not fit ("To serve at least one request with the model's max seq len ...").
"""

from __future__ import annotations

from deployctl.engines.memory import KvBudget, StartupInput

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


def default_batch_tokens(total: int, name: str) -> int:
    return 8192 if _large(total, name) else 2048


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
