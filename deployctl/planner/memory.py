"""Per-GPU memory arithmetic for a sharded, quantized decoder model. Pure functions."""

from __future__ import annotations

from deployctl.hardware.gpu import GiB
from deployctl.models import ModelFacts

MiB = 1024**2

# What the engine holds besides weights, activations and the KV cache, per GPU. The CUDA
# context with PyTorch and the GPTQ/flash-attention kernels loaded is 0.5-0.8 GiB; TGI
# captures CUDA graphs for small batch sizes (a few hundred MiB); NCCL's buffers when
# sharded; and a share of the total kept back for allocator fragmentation.
CUDA_CONTEXT = 768 * MiB
CUDA_GRAPHS = 512 * MiB
NCCL_BUFFERS = 256 * MiB
FRAGMENTATION_SHARE = 0.03
# Others' use of a GPU below this is the display server or the driver, not a workload.
IDLE_USE = 512 * MiB


def runtime_reserve(total: int, num_shard: int) -> int:
    """Give the bytes the runtime holds on one GPU besides weights, activations and KV cache."""
    nccl = NCCL_BUFFERS if num_shard > 1 else 0
    return CUDA_CONTEXT + CUDA_GRAPHS + nccl + int(total * FRAGMENTATION_SHARE)


def shard_weight_bytes(model: ModelFacts, num_shard: int) -> int:
    """Give the weight bytes one shard holds: linear layers and embeddings split, norms replicated."""
    replicated = (2 * model.num_layers + 1) * model.hidden_size * model.dtype_bytes
    return (model.weight_bytes - replicated) // num_shard + replicated


def prefill_bytes_per_token(model: ModelFacts, num_shard: int) -> int:
    """Give the activation bytes one prefill token needs on one shard.

    The peak is in the MLP (gate and up projections side by side) plus the residual stream
    and the q/k/v projections; twice that for the temporaries the kernels keep.
    """
    per_token = (
        2 * model.intermediate_size
        + 4 * model.hidden_size
        + (model.num_heads + 2 * model.num_kv_heads) * model.head_dim
    )
    return 2 * per_token * model.dtype_bytes // num_shard


def kv_bytes_per_token_per_shard(model: ModelFacts, num_shard: int) -> int:
    """Give one token's KV cache bytes on one shard (KV heads split, replicated if fewer than shards)."""
    kv_heads = max(1, model.num_kv_heads // num_shard)
    return 2 * model.num_layers * kv_heads * model.head_dim * model.dtype_bytes


def gib(n: int | float) -> str:
    """Give bytes as GiB with one decimal."""
    return f"{n / GiB:.1f} GiB"
