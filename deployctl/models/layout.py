"""Where each weight byte goes under tensor parallelism: split over the GPUs, or copied onto each.

The rules are the engines' own (TGI 3.3 `server/text_generation_server/layers/tensor_parallel.py`,
`utils/weights.py`, `layers/gptq/__init__.py` `get_weights_row`; vLLM `model_executor/layers/linear.py`,
`vocab_parallel_embedding.py`, `quantization/utils/marlin_utils.py` `marlin_repeat_scales_on_all_ranks`):

- column-parallel layers (q/k/v, gate/up, MoE w1/w3) split their output dimension;
- row-parallel layers (o_proj, down_proj, MoE w2) split their input dimension; whether their
  quantization scales and zeros stay whole on every GPU is the engine's rule (`scales_whole`):
  TGI 3.3 keeps them whole for act-order (GPTQ desc_act, compressed-tensors actorder "group") or
  one scale per channel (group -1) (`layers/marlin/gptq.py` `GPTQMarlinWeightsLoader.get_weights_row`,
  `layers/compressed_tensors/wna16_int.py` `WNA16IntLoader.get_weights_row`, v3.3.4-v3.3.7); vLLM
  0.30-0.34 only for group -1 (`quantization/utils/marlin_utils.py` `marlin_repeat_scales_on_all_ranks`:
  `is_channelwise and is_row_parallel`; it refuses act-order with groups at load);
- embeddings and lm_head split the vocabulary; with tied embeddings TGI loads lm_head as a
  second copy of the embedding (`TensorParallelHead.load` from `embed_tokens`), vLLM shares it;
- norms, routers and row-parallel biases are on every GPU;
- k/v projections split by KV head; with more GPUs than KV heads each GPU keeps whole heads.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from deployctl.models.config import TextConfig
from deployctl.models.quant import Quantization
from deployctl.models.safetensors import Tensor

COLUMN = {"q_proj", "qkv_proj", "gate_proj", "up_proj", "gate_up_proj", "w1", "w3"}
KV = {"k_proj", "v_proj"}
ROW = {"o_proj", "down_proj", "w2"}
EMBEDDING = {"embed_tokens", "lm_head"}
_SCALES = {"scales", "qzeros", "weight_scale", "weight_zero_point"}
_SUFFIXES = {"weight", "bias", "qweight", "g_idx", "weight_packed", "weight_shape", "weight_g_idx", *_SCALES}


class WeightLayout(BaseModel):
    """Weight bytes by how tensor parallelism places them."""

    model_config = ConfigDict(frozen=True)

    split: int = 0
    kv: int = 0
    row_scales: int = 0
    embedding: int = 0
    replicated: int = 0
    tied_embedding: int = 0  # the embedding's bytes, when lm_head is tied to it (TGI loads it twice)

    @property
    def total(self) -> int:
        return self.split + self.kv + self.row_scales + self.embedding + self.replicated

    def per_shard(self, shards: int, *, kv_heads: int, scales_whole: bool, tied_copy: bool) -> int:
        """Give the weight bytes one GPU holds when the model is split over `shards` GPUs."""
        kv_per_gpu = self.kv * math.ceil(kv_heads / shards) // kv_heads
        scales = self.row_scales if scales_whole else self.row_scales // shards
        embedding = (self.embedding + (self.tied_embedding if tied_copy else 0)) // shards
        return self.split // shards + kv_per_gpu + scales + embedding + self.replicated


def role(name: str) -> str:
    """Give the layout bucket of a tensor from its checkpoint name."""
    parts = name.split(".")
    suffix = parts[-1] if parts[-1] in _SUFFIXES else ""
    module = parts[-2] if suffix and len(parts) > 1 else parts[-1]
    if "vision" in name or "multi_modal_projector" in name:
        return "replicated"
    if module in EMBEDDING:
        return "embedding"
    if module in KV:
        return "kv"
    if module in COLUMN:
        return "split"
    if module in ROW:
        if suffix in _SCALES:
            return "row_scales"
        if suffix in ("bias", "weight_shape"):
            return "replicated"
        return "split"
    return "replicated"


def from_tensors(tensors: list[Tensor], tied: bool) -> WeightLayout:
    """Give the layout of the tensors a checkpoint holds."""
    sums = {"split": 0, "kv": 0, "row_scales": 0, "embedding": 0, "replicated": 0}
    embed = 0
    for t in tensors:
        sums[role(t.name)] += t.nbytes
        if t.name.endswith("embed_tokens.weight"):
            embed = t.nbytes
    has_head = any(t.name.endswith("lm_head.weight") for t in tensors)
    return WeightLayout(**sums, tied_embedding=embed if tied and not has_head else 0)


def _linear(k: int, n: int, q: Quantization, dtype_bytes: int) -> tuple[int, int]:
    """(weight bytes, scale+zero bytes) of one linear layer, in k -> out n, as the checkpoint stores it."""
    if q.method == "none":
        return k * n * dtype_bytes, 0
    groups = math.ceil(k / q.group_size) if q.group_size else 1
    packed = k * n * q.bits // 8
    scales = groups * n * 2
    zeros = 0 if (q.method == "compressed-tensors" and q.sym is not False) else groups * n * q.bits // 8
    index = k * 4 if q.method == "gptq" or (q.method == "compressed-tensors" and q.act_order) else 0
    return packed + index, scales + zeros


def estimate(c: TextConfig, q: Quantization, dtype_bytes: int) -> WeightLayout:
    """Give the layout a checkpoint of this config and quantization holds (when its files are not here)."""
    h, hd, layers = c.hidden_size, c.head_size, c.num_hidden_layers
    qdim, kvdim = c.num_attention_heads * hd, c.kv_heads * hd
    split = kv = row_scales = replicated = 0

    def add(k: int, n: int, kind: str, count: int = 1) -> None:
        nonlocal split, kv, row_scales
        weights, scales = _linear(k, n, q, dtype_bytes)
        if kind == "kv":
            kv += (weights + scales) * count
        elif kind == "row":
            split += weights * count
            row_scales += scales * count
        else:
            split += (weights + scales) * count

    add(h, qdim, "col", layers)
    add(h, kvdim, "kv", 2 * layers)
    add(qdim, h, "row", layers)
    if c.experts:
        inter = c.expert_intermediate
        add(h, inter, "col", 2 * c.experts * layers)
        add(inter, h, "row", c.experts * layers)
        replicated += c.experts * h * dtype_bytes * layers  # the router, kept in 16 bits
    else:
        add(h, c.intermediate_size, "col", 2 * layers)
        add(c.intermediate_size, h, "row", layers)
    if c.model_type == "qwen2":
        split += qdim * dtype_bytes * layers
        kv += 2 * kvdim * dtype_bytes * layers
    norms_per_layer = 4 if c.model_type in ("gemma2", "gemma3", "gemma3_text") else 2
    replicated += (norms_per_layer * layers + 1) * h * dtype_bytes
    if c.model_type in ("qwen3", "qwen3_moe", "gemma3", "gemma3_text"):
        replicated += 2 * hd * dtype_bytes * layers  # q_norm and k_norm
    embed = c.vocab_size * h * dtype_bytes
    tied = c.tied()
    return WeightLayout(
        split=split,
        kv=kv,
        row_scales=row_scales,
        embedding=embed * (1 if tied else 2),
        replicated=replicated,
        tied_embedding=embed if tied else 0,
    )
