"""Per-GPU activation and KV arithmetic for a sharded decoder model. Pure functions."""

from __future__ import annotations

import math

from deployctl.gpus.gpu import GiB
from deployctl.models import ModelFacts

# KV element widths for `--kv-cache-dtype` (TGI fp8_e4m3fn, vLLM fp8: one byte per element).
KV_DTYPE_BYTES = {"fp8": 1}


def activation_bytes_per_token(model: ModelFacts, shards: int) -> int:
    """Give one prefill token's peak activation bytes on one GPU.

    The peak is in the MLP of a decoder layer (TGI `flash_llama_modeling.py` `LlamaMLP`,
    vLLM `models/llama.py`): the residual stream and its normed copy (hidden each), the fused
    gate/up output (2 x intermediate / shards) and its activation (intermediate / shards), with
    the q/k/v projection's output still referenced. MoE layers compute only the routed
    experts per token.
    """
    inter = model.experts_per_token * model.expert_intermediate_size if model.is_moe else model.intermediate_size
    qkv = (model.num_heads + 2 * model.num_kv_heads) * model.head_dim
    per_token = 4 * model.hidden_size + qkv // shards + 3 * inter // shards
    return per_token * model.dtype_bytes


def logits_bytes_per_seq(model: ModelFacts) -> int:
    """Give one sequence's logits row as the samplers hold it (fp32 over the whole vocabulary)."""
    return model.vocab_size * 4


def kv_bytes_per_token_per_shard(model: ModelFacts, shards: int, kv_dtype: str = "auto") -> int:
    """Give one token's KV cache bytes on one GPU (KV heads split; whole heads kept when fewer than GPUs)."""
    kv_heads = math.ceil(model.num_kv_heads / shards)
    width = KV_DTYPE_BYTES.get(kv_dtype, model.dtype_bytes)
    return 2 * model.num_layers * kv_heads * model.head_dim * width


def gib(n: int | float) -> str:
    """Give bytes as GiB with one decimal."""
    return f"{n / GiB:.1f} GiB"
