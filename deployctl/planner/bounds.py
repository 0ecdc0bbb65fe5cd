"""Physical bounds for one model on n GPUs: what no engine can beat, from bytes, FLOPs and a queue. Pure functions.

Every number here is a bound at the datasheet's peak (memory bandwidth `B`, dense fp16 tensor throughput
`F`), never an estimate of what an engine reaches: a floor on time (`>=`) or a ceiling on a rate (`<=`).
All-reduces between GPUs (through host memory on PCIe cards without P2P) come on top and are not counted.
Formulas and the published claims they judge: docs/planner.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployctl.models import ModelFacts
from deployctl.planner import memory


@dataclass(frozen=True)
class Hardware:
    """n GPUs of one kind, as the bounds see them."""

    gpus: int
    bandwidth_gbs: float  # per GPU
    fp16_tflops: float  # per GPU, dense


@dataclass(frozen=True)
class Workload:
    """Requests of `prompt` tokens in and `answer` tokens out, and the latency targets they are served under."""

    prompt: int
    answer: int
    slo_ttft_ms: float | None = None  # mean time to first token
    slo_itl_ms: float | None = None  # time between tokens while generating

    @property
    def mean_context(self) -> int:
        """Tokens a decode step attends to, on average over the answer."""
        return self.prompt + self.answer // 2


@dataclass(frozen=True)
class QpsBound:
    """The most requests per second the hardware can serve, and which limit binds."""

    qps: float
    binding: str  # compute, KV (decode slots), TTFT or ITL
    limits: dict[str, float]


def decode_read_bytes(model: ModelFacts, weights_per_gpu: int, shards: int, *, batch: int, tied_copy: bool) -> int:
    """Give the weight bytes one GPU reads in one decode step of `batch` requests.

    Every linear layer's shard, the lm_head shard and the norms; of the embedding table only the rows
    looked up (one per request; a vocabulary-parallel embedding holds vocab / n rows per GPU). A tied
    lm_head that the engine shares with the embedding (vLLM) is read whole as the lm_head; one that it
    loads as a copy (TGI) leaves the embedding table unread but for its rows. MoE layers read the
    experts the batch's tokens are routed to, at most all of them.
    """
    read = weights_per_gpu
    table = model.vocab_size * model.hidden_size * model.dtype_bytes
    if not model.tie_word_embeddings or tied_copy:
        read -= table // shards
        read += min(batch, model.vocab_size // shards) * model.hidden_size * model.dtype_bytes
    if model.is_moe and model.experts:
        share = min(1.0, batch * model.experts_per_token / model.experts)
        read -= int(model.layout.split / shards * (1 - share) * _expert_share(model))
    return read


def _expert_share(model: ModelFacts) -> float:
    """Give the share of the split weights that are routed experts' (the rest is attention)."""
    experts = 3 * model.hidden_size * model.expert_intermediate_size * model.experts
    attention = 2 * model.hidden_size * (model.num_heads + model.num_kv_heads) * model.head_dim
    return experts / (experts + attention)


def decode_floor_ms(
    model: ModelFacts, weights_per_gpu: int, hw: Hardware, *, context: int, tied_copy: bool, kv_dtype: str = "auto"
) -> float:
    """Give the floor on one request's decode step: the bytes each GPU must read (weights + the KV of
    `context` tokens) over its memory bandwidth, in ms."""
    kv = context * memory.kv_bytes_per_token_per_shard(model, hw.gpus, kv_dtype)
    read = decode_read_bytes(model, weights_per_gpu, hw.gpus, batch=1, tied_copy=tied_copy)
    return (read + kv) / (hw.bandwidth_gbs * 1e9) * 1000


def _linear_params(model: ModelFacts) -> int:
    """Give the parameters one token goes through in matrix products, without the embedding lookup and lm_head."""
    embeddings = model.vocab_size * model.hidden_size * (1 if model.tie_word_embeddings else 2)
    return model.active_parameters - embeddings


def _attention_flops(model: ModelFacts, tokens: int, start: int = 0) -> float:
    """Give the FLOPs of causal attention (QK^T and AV) for tokens start+1 .. start+tokens."""
    pairs = tokens * start + tokens * (tokens + 1) / 2
    return 4 * model.num_layers * model.num_heads * model.head_dim * pairs


def prefill_flops(model: ModelFacts, prompt: int) -> float:
    """Give the FLOPs of a `prompt`-token prefill: every linear layer per token, causal attention, and the
    lm_head on the last token only (TGI 3.x and vLLM compute the prompt's logits for its last token)."""
    return (
        2 * _linear_params(model) * prompt + _attention_flops(model, prompt) + 2 * model.hidden_size * model.vocab_size
    )


def prefill_ms(model: ModelFacts, weights_per_gpu: int, hw: Hardware, prompt: int) -> float:
    """Give the floor on one prefill of `prompt` tokens, in ms: its FLOPs at peak over all GPUs, or reading the
    weights once, whichever is longer."""
    compute = prefill_flops(model, prompt) / (hw.gpus * hw.fp16_tflops * 1e12)
    read = weights_per_gpu / (hw.bandwidth_gbs * 1e9)
    return max(compute, read) * 1000


def step_s(
    model: ModelFacts, weights_per_gpu: int, hw: Hardware, *, batch: int, context: int, tied_copy: bool
) -> float:
    """Give the floor on one decode step of `batch` requests at `context` tokens each, in seconds."""
    read = decode_read_bytes(model, weights_per_gpu, hw.gpus, batch=batch, tied_copy=tied_copy)
    kv = batch * context * memory.kv_bytes_per_token_per_shard(model, hw.gpus)
    flops = batch * (
        2 * (_linear_params(model) + model.hidden_size * model.vocab_size) + _attention_flops(model, 1, context)
    )
    return max((read + kv) / (hw.bandwidth_gbs * 1e9), flops / (hw.gpus * hw.fp16_tflops * 1e12))


def request_flops(model: ModelFacts, w: Workload) -> float:
    """Give the FLOPs one request costs: its prefill and every generated token after the first."""
    decode = (w.answer - 1) * (2 * (_linear_params(model) + model.hidden_size * model.vocab_size))
    return prefill_flops(model, w.prompt) + decode + _attention_flops(model, w.answer - 1, w.prompt)


def ttft_qps(service_s: float, target_s: float) -> float:
    """Give the arrival rate at which the mean time to first token reaches `target_s`.

    Queueing assumption: Poisson arrivals, prefills served one at a time, first come first served, each
    taking `service_s` (M/D/1): mean TTFT = S + lambda S^2 / (2 (1 - lambda S)).
    """
    if service_s >= target_s:
        return 0.0
    return 2 * (target_s - service_s) / (service_s * (2 * target_s - service_s))


def qps(model: ModelFacts, weights_per_gpu: int, hw: Hardware, w: Workload, *, batch: int, tied_copy: bool) -> QpsBound:
    """Give the most requests per second of workload `w` the hardware serves with `batch` requests in the KV cache.

    Each limit is an upper bound; the smallest binds: compute (n F / FLOPs per request), KV (Little's law:
    at most `batch` requests in flight, each decoding `answer` steps), and the SLOs when given (TTFT by
    M/D/1 over the prefill floor; ITL by the largest batch whose step stays within it).
    """
    limits = {"compute": hw.gpus * hw.fp16_tflops * 1e12 / request_flops(model, w)}
    c = w.mean_context
    step = step_s(model, weights_per_gpu, hw, batch=max(1, batch), context=c, tied_copy=tied_copy)
    limits["KV"] = batch / (w.answer * step) if batch else 0.0
    if w.slo_ttft_ms is not None:
        service = prefill_ms(model, weights_per_gpu, hw, w.prompt) / 1000
        limits["TTFT"] = ttft_qps(service, w.slo_ttft_ms / 1000)
    if w.slo_itl_ms is not None:
        best = 0.0
        for b in range(batch, 0, -1):
            s = step_s(model, weights_per_gpu, hw, batch=b, context=c, tied_copy=tied_copy)
            if s * 1000 <= w.slo_itl_ms:
                best = b / (w.answer * s)
                break
        limits["ITL"] = best
    binding = min(limits, key=lambda k: limits[k])
    return QpsBound(limits[binding], binding, limits)
