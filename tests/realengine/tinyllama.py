"""Build a tiny Llama checkpoint offline (fp16, and a 4-bit GPTQ or AWQ copy of the same weights).

Run with the real engine's Python (it has torch, tokenizers and safetensors):

    $VLLM_CACHE/current/venv/bin/python tests/realengine/tinyllama.py OUT [--gptq | --awq | --config-only]

- The tokenizer is a byte-level BPE trained with `tokenizers` on the repository's own text (README.md
  and docs/*.md): nothing is downloaded.
- The weights are random (seeded), written with safetensors: the model speaks nonsense, quickly.
- Sizes obey the CPU build's kernels: head_dim 64 is one of the CPU attention backend's head sizes
  (v1/attention/backends/cpu_attn.py `get_supported_head_sizes`, vLLM 0.32.0), and every linear
  layer's input and output, also when split over 2 shards, is a multiple of 32 (the 4-bit CPU kernel,
  model_executor/kernels/linear/mixed_precision/cpu.py `CPUWNA16LinearKernel.can_implement`).
- GPTQ: AutoGPTQ's layout (qweight int32 [in/8, out] with 8 nibbles along the input, qzeros int32
  [in/group, out/8] holding zero-1 = 7, fp16 scales [in/group, out], g_idx), symmetric, group size 32,
  no act-order (vLLM refuses act-order with groups). AWQ: AutoAWQ's GEMM layout (qweight int32
  [in, out/8] with nibbles in the order 0,2,4,6,1,3,5,7, qzeros int32 [in/group, out/8], scales).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, VOCAB = 256, 512, 2, 4, 2, 2048
MAX_POSITIONS = 4096
GROUP = 32
SEED = 1234
SPECIALS = ["<unk>", "<s>", "</s>"]
# A plain chat template: the chat route needs one, and a tokenizer trained here has none.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] if m['content'] is string else "
    "m['content'] | map(attribute='text') | join(' ') }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
LINEARS = {
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (HIDDEN, HIDDEN // HEADS * KV_HEADS),
    "self_attn.v_proj": (HIDDEN, HIDDEN // HEADS * KV_HEADS),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (HIDDEN, INTERMEDIATE),
    "mlp.up_proj": (HIDDEN, INTERMEDIATE),
    "mlp.down_proj": (INTERMEDIATE, HIDDEN),
}


def config(quant: dict[str, object] | None, max_positions: int = MAX_POSITIONS) -> dict[str, object]:
    out: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HIDDEN // HEADS,
        "vocab_size": VOCAB,
        "max_position_embeddings": max_positions,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float16",
    }
    if quant:
        out["quantization_config"] = quant
    return out


def corpus() -> list[str]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": MAX_POSITIONS,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))


def dense_weights() -> dict[str, object]:
    import torch

    g = torch.Generator().manual_seed(SEED)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * 0.05).to(torch.float16)

    w: dict[str, object] = {
        "model.embed_tokens.weight": rand(VOCAB, HIDDEN),
        "model.norm.weight": torch.ones(HIDDEN, dtype=torch.float16),
        "lm_head.weight": rand(VOCAB, HIDDEN),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.float16)
        w[f"{p}.post_attention_layernorm.weight"] = torch.ones(HIDDEN, dtype=torch.float16)
        for name, (n_in, n_out) in LINEARS.items():
            w[f"{p}.{name}.weight"] = rand(n_out, n_in)  # torch Linear: [out, in]
    return w


def _quantize(weight: object) -> tuple[object, object]:
    """Give (4-bit values 0..15 as int32 [in, out], fp16 scales [in/GROUP, out]), symmetric around 8."""
    import torch

    w = weight.float().t().contiguous()  # type: ignore[attr-defined]  # [in, out]
    n_in, n_out = w.shape
    groups = w.reshape(n_in // GROUP, GROUP, n_out)
    scales = (groups.abs().amax(dim=1) / 7).clamp(min=1e-6)  # [in/GROUP, out]
    q = torch.clamp(torch.round(groups / scales[:, None, :]) + 8, 0, 15).to(torch.int32).reshape(n_in, n_out)
    return q, scales.to(torch.float16)


def _int32(word: object) -> object:
    import torch

    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)  # type: ignore[operator]


def pack_rows(values: object) -> object:
    """Pack [rows, cols] nibbles 8 rows to an int32 (GPTQ's qweight): nibble k from row 8i+k."""
    import torch

    v = values.to(torch.int64).reshape(-1, 8, values.shape[1])  # type: ignore[attr-defined]
    return _int32(sum((v[:, k, :] & 0xF) << (4 * k) for k in range(8)))


def pack_cols(values: object, order: list[int]) -> object:
    """Pack [rows, cols] nibbles 8 columns to an int32: nibble k from column 8j+order[k]."""
    import torch

    v = values.to(torch.int64).reshape(values.shape[0], -1, 8)  # type: ignore[attr-defined]
    return _int32(sum((v[:, :, src] & 0xF) << (4 * k) for k, src in enumerate(order)))


def quantized_weights(dense: dict[str, object], method: str) -> dict[str, object]:
    import torch

    out: dict[str, object] = {}
    for key, value in dense.items():
        linear = key.endswith(".weight") and any(f".{name}." in key for name in LINEARS)
        if not linear:
            out[key] = value
            continue
        base = key[: -len(".weight")]
        q, scales = _quantize(value)
        n_in, n_out = q.shape  # type: ignore[attr-defined]
        zeros = torch.full((n_in // GROUP, n_out), 8, dtype=torch.int32)
        if method == "gptq":
            out[f"{base}.qweight"] = pack_rows(q)
            out[f"{base}.qzeros"] = pack_cols(zeros - 1, list(range(8)))  # AutoGPTQ stores zero - 1
            out[f"{base}.g_idx"] = torch.arange(n_in, dtype=torch.int32) // GROUP
        else:
            awq_order = [0, 2, 4, 6, 1, 3, 5, 7]
            out[f"{base}.qweight"] = pack_cols(q, awq_order)
            out[f"{base}.qzeros"] = pack_cols(zeros, awq_order)
        out[f"{base}.scales"] = scales
    return out


QUANT_CONFIGS: dict[str, dict[str, object]] = {
    "gptq": {
        "quant_method": "gptq",
        "bits": 4,
        "group_size": GROUP,
        "desc_act": False,
        "sym": True,
        "damp_percent": 0.01,
        "true_sequential": True,
        "checkpoint_format": "gptq",
    },
    "awq": {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True, "version": "gemm"},
}


def build(out: Path, quant: str | None, config_only: bool = False, max_positions: int = MAX_POSITIONS) -> Path:
    """Write the checkpoint to `out` (created); give `out`."""
    out.mkdir(parents=True, exist_ok=True)
    quant_config = QUANT_CONFIGS[quant] if quant else None
    (out / "config.json").write_text(json.dumps(config(quant_config, max_positions), indent=2))
    write_tokenizer(out)
    if config_only:
        return out
    from safetensors.torch import save_file

    weights = dense_weights()
    if quant:
        weights = quantized_weights(weights, quant)
    save_file(
        {k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"), metadata={"format": "pt"}
    )  # type: ignore[attr-defined]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--gptq", action="store_const", const="gptq", dest="quant")
    kind.add_argument("--awq", action="store_const", const="awq", dest="quant")
    parser.add_argument("--config-only", action="store_true", help="config.json and tokenizer, no weights")
    parser.add_argument("--max-positions", type=int, default=MAX_POSITIONS, help="max_position_embeddings")
    args = parser.parse_args(argv)
    print(build(args.out, args.quant, args.config_only, args.max_positions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
