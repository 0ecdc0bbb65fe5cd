"""Published checkpoints the planner must read right: their config.json (shape and quantization) and published size.

Each config is the checkpoint's own config.json reduced to the keys deployctl reads (plus
the quantization config as published). `published_gb` is the total of the checkpoint's
*.safetensors files as its Hugging Face "Files" page lists them (GB = 10^9 bytes); the tests
write sparse files of the same tensor names and shapes and check deployctl's reading of them
against that figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GPTQ_QWEN = {
    "quant_method": "gptq",
    "bits": 4,
    "group_size": 128,
    "desc_act": False,
    "sym": True,
    "damp_percent": 0.01,
    "true_sequential": True,
}
GPTQ_ACT_ORDER = {
    "quant_method": "gptq",
    "bits": 4,
    "group_size": 128,
    "desc_act": True,
    "sym": True,
    "damp_percent": 0.1,
}
AWQ = {
    "quant_method": "awq",
    "bits": 4,
    "group_size": 128,
    "zero_point": True,
    "version": "gemm",
    "modules_to_not_convert": None,
}
W4A16 = {
    "quant_method": "compressed-tensors",
    "format": "pack-quantized",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": 4,
                "type": "int",
                "symmetric": True,
                "strategy": "group",
                "group_size": 128,
                "actorder": "weight",
            },
            "input_activations": None,
            "output_activations": None,
        }
    },
    "ignore": ["lm_head"],
}


def _llama(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, **more: Any) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "rope_scaling": {
            "factor": 8.0,
            "rope_type": "llama3",
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        **more,
    }


def _qwen2(hidden: int, inter: int, layers: int, heads: int, kv: int, **more: Any) -> dict[str, Any]:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "sliding_window": 131072,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        **more,
    }


def _qwen3(**more: Any) -> dict[str, Any]:
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        **more,
    }


MISTRAL_7B_V03 = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 32768,
    "max_position_embeddings": 32768,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}

# name -> (config.json, published safetensors total in GB, where that figure is listed). None: a
# total not known to 1% (the shapes are still the checkpoint's own; its size is not asserted).
CHECKPOINTS: dict[str, tuple[dict[str, Any], float | None, str]] = {
    "Qwen2.5-7B-Instruct-GPTQ-Int4": (
        _qwen2(3584, 18944, 28, 28, 4, quantization_config=GPTQ_QWEN),
        5.58,
        "huggingface.co/Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4, Files (2 shards)",
    ),
    "Qwen2.5-32B-Instruct-GPTQ-Int4": (
        _qwen2(5120, 27648, 64, 40, 8, quantization_config=GPTQ_QWEN),
        19.4,
        "huggingface.co/Qwen/Qwen2.5-32B-Instruct-GPTQ-Int4, Files (5 shards)",
    ),
    "Qwen2.5-72B-Instruct-GPTQ-Int4": (
        # Qwen pads intermediate_size 29568 -> 29696 in its GPTQ/AWQ releases so that 2, 4 and 8 GPUs split it
        _qwen2(8192, 29696, 80, 64, 8, quantization_config=GPTQ_QWEN),
        41.6,
        "huggingface.co/Qwen/Qwen2.5-72B-Instruct-GPTQ-Int4, Files (11 shards)",
    ),
    "Qwen2.5-32B-Instruct-AWQ": (
        _qwen2(5120, 27648, 64, 40, 8, quantization_config=AWQ),
        19.3,
        "huggingface.co/Qwen/Qwen2.5-32B-Instruct-AWQ, Files (5 shards)",
    ),
    "Meta-Llama-3.1-8B-Instruct-GPTQ-INT4": (
        _llama(4096, 14336, 32, 32, 8, 128256, quantization_config=GPTQ_ACT_ORDER),
        5.73,
        "huggingface.co/hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4, Files (2 shards)",
    ),
    "Meta-Llama-3.1-70B-Instruct-AWQ-INT4": (
        _llama(8192, 28672, 80, 64, 8, 128256, quantization_config=AWQ),
        39.8,
        "huggingface.co/hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4, Files (9 shards)",
    ),
    "DeepSeek-R1-Distill-Llama-70B-AWQ": (
        # config.json of casperhansen/deepseek-r1-distill-llama-70b-awq (bf16 norms and lm_head, head_dim 128)
        _llama(8192, 28672, 80, 64, 8, 128256, torch_dtype="bfloat16", head_dim=128, quantization_config=AWQ),
        None,
        "huggingface.co/casperhansen/deepseek-r1-distill-llama-70b-awq, Files (9 shards; the 9th's size was not"
        " listed on the page read, so the total is not asserted)",
    ),
    "Meta-Llama-3.1-70B-Instruct-GPTQ-INT4": (
        _llama(8192, 28672, 80, 64, 8, 128256, quantization_config=GPTQ_ACT_ORDER),
        39.9,
        "huggingface.co/hugging-quants/Meta-Llama-3.1-70B-Instruct-GPTQ-INT4, Files (9 shards)",
    ),
    "Meta-Llama-3.1-70B-Instruct-quantized.w4a16": (
        _llama(8192, 28672, 80, 64, 8, 128256, torch_dtype="bfloat16", quantization_config=W4A16),
        None,
        "RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w4a16 layout (pack-quantized, lm_head bf16); total not recalled to 1%",
    ),
    "Mistral-7B-Instruct-v0.3": (
        MISTRAL_7B_V03,
        14.5,
        "huggingface.co/mistralai/Mistral-7B-Instruct-v0.3, Files (3 HF shards, plus consolidated.safetensors of 14.5 GB)",
    ),
    "Mistral-Small-24B-Instruct-2501-AWQ": (
        {
            **MISTRAL_7B_V03,
            "hidden_size": 5120,
            "intermediate_size": 32768,
            "num_hidden_layers": 40,
            "vocab_size": 131072,
            "torch_dtype": "float16",
            "quantization_config": AWQ,
        },
        14.3,
        "huggingface.co/casperhansen/mistral-small-24b-instruct-2501-awq, Files (3 shards)",
    ),
    "Mixtral-8x7B-Instruct-v0.1-GPTQ": (
        {
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "vocab_size": 32000,
            "max_position_embeddings": 32768,
            "tie_word_embeddings": False,
            "torch_dtype": "bfloat16",
            "quantization_config": {**GPTQ_ACT_ORDER, "group_size": -1},
        },
        23.81,
        "huggingface.co/TheBloke/Mixtral-8x7B-Instruct-v0.1-GPTQ, README's branch table: main = 4-bit, no group, act-order, 23.81 GB",
    ),
    "gemma-2-27b-it-GPTQ": (
        {
            "architectures": ["Gemma2ForCausalLM"],
            "model_type": "gemma2",
            "hidden_size": 4608,
            "intermediate_size": 36864,
            "num_hidden_layers": 46,
            "num_attention_heads": 32,
            "num_key_value_heads": 16,
            "head_dim": 128,
            "vocab_size": 256000,
            "max_position_embeddings": 8192,
            "torch_dtype": "float16",
            "quantization_config": {**GPTQ_QWEN, "desc_act": True},
        },
        None,
        "ModelCloud/gemma-2-27b-it-gptq-4bit layout (tied embeddings: no lm_head); total not recalled to 1%",
    ),
    "Qwen3-32B-AWQ": (
        _qwen3(
            hidden_size=5120,
            intermediate_size=25600,
            num_hidden_layers=64,
            num_attention_heads=64,
            num_key_value_heads=8,
            quantization_config=AWQ,
        ),
        19.3,
        "huggingface.co/Qwen/Qwen3-32B-AWQ, Files (4 shards)",
    ),
    "Qwen3-30B-A3B-GPTQ-Int4": (
        _qwen3(
            architectures=["Qwen3MoeForCausalLM"],
            model_type="qwen3_moe",
            hidden_size=2048,
            intermediate_size=6144,
            moe_intermediate_size=768,
            num_experts=128,
            num_experts_per_tok=8,
            num_hidden_layers=48,
            num_attention_heads=32,
            num_key_value_heads=4,
            quantization_config=GPTQ_QWEN,
        ),
        None,
        "Qwen/Qwen3-30B-A3B-GPTQ-Int4 layout (128 experts, router in fp16); total not recalled to 1%",
    ),
}


def write(root: Path, name: str, index: bool = True) -> Path:
    """Write the named checkpoint under `root` (sparse files); Mistral also gets its consolidated.safetensors."""
    from helpers.modelgen import tensors, write_checkpoint

    config = CHECKPOINTS[name][0]
    extra: dict[str, Any] = {}
    if name.startswith("Mistral-7B"):
        # Mistral's own format beside the HF shards: the same weights again, under other names.
        extra["consolidated.safetensors"] = [(f"consolidated.{i}", d, s) for i, (_, d, s) in enumerate(tensors(config))]
    return write_checkpoint(root / name, config, extra=extra, index=index)
