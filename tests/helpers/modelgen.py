"""Write test model directories: a real config.json and safetensors with the real tensor names and shapes (sparse).

The tensor names and layouts are the ones each quantizer writes (AutoGPTQ/GPTQModel, AutoAWQ,
llm-compressor's pack-quantized compressed-tensors) for each architecture's modules
(transformers `modeling_<family>.py`); the data is a hole, so a 40 GB checkpoint costs a few
kilobytes on disk.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from deployctl.models import catalog

SHARD_BYTES = 5 * 10**9  # checkpoints are cut into ~5 GB files
Item = tuple[str, str, list[int]]
_WIDTH = {"F16": 2, "BF16": 2, "I32": 4, "F32": 4, "I64": 8}


def _quant(config: dict[str, Any]) -> dict[str, Any]:
    q = config.get("quantization_config") or {}
    if q.get("quant_method") == "compressed-tensors":
        w = next(iter(q["config_groups"].values()))["weights"]
        return {
            "method": "compressed-tensors",
            "bits": w["num_bits"],
            "group": w.get("group_size") or -1,
            "actorder": w.get("actorder") == "group",
            "sym": w.get("symmetric", True),
        }
    if q:
        return {
            "method": q.get("quant_method", "gptq"),
            "bits": q.get("bits", q.get("w_bit", 4)),
            "group": q.get("group_size", q.get("q_group_size", 128)),
        }
    return {"method": "none"}


def _linear(prefix: str, k: int, n: int, q: dict[str, Any], dtype: str) -> list[Item]:
    """The tensors one linear layer (in k, out n) has in a checkpoint of this quantization."""
    method = q["method"]
    if method == "none":
        return [(f"{prefix}.weight", dtype, [n, k])]
    bits, group = q["bits"], q["group"]
    groups = k // group if group > 0 else 1
    pack = 32 // bits
    if method == "gptq":
        return [
            (f"{prefix}.qweight", "I32", [k // pack, n]),
            (f"{prefix}.qzeros", "I32", [groups, n // pack]),
            (f"{prefix}.scales", "F16", [groups, n]),
            (f"{prefix}.g_idx", "I32", [k]),
        ]
    if method == "awq":
        return [
            (f"{prefix}.qweight", "I32", [k, n // pack]),
            (f"{prefix}.qzeros", "I32", [groups, n // pack]),
            (f"{prefix}.scales", "F16", [groups, n]),
        ]
    out = [
        (f"{prefix}.weight_packed", "I32", [n, k // pack]),
        (f"{prefix}.weight_scale", dtype, [n, groups]),
        (f"{prefix}.weight_shape", "I64", [2]),
    ]
    if not q["sym"]:
        out.append((f"{prefix}.weight_zero_point", "I32", [n // pack, groups]))
    if q["actorder"]:
        out.append((f"{prefix}.weight_g_idx", "I32", [k]))
    return out


def tensors(config: dict[str, Any]) -> list[Item]:
    """List (name, dtype, shape) of every tensor in a checkpoint of this config."""
    q = _quant(config)
    family = config["model_type"]
    dtype = {"bfloat16": "BF16", "float32": "F32"}.get(config.get("torch_dtype", ""), "F16")
    if q["method"] in ("gptq", "awq"):
        dtype = "F16"
    h, heads = config["hidden_size"], config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    hd = config.get("head_dim") or h // heads
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    experts = config.get("num_local_experts") or config.get("num_experts") or 0
    moe_inter = config.get("moe_intermediate_size") or inter
    out: list[Item] = [("model.embed_tokens.weight", dtype, [vocab, h])]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        if family == "phi3":
            out += _linear(f"{p}.self_attn.qkv_proj", h, (heads + 2 * kv) * hd, q, dtype)
        else:
            for name, n in (("q_proj", heads * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)):
                out += _linear(f"{p}.self_attn.{name}", h, n, q, dtype)
                if family == "qwen2":
                    out.append((f"{p}.self_attn.{name}.bias", dtype, [n]))
        out += _linear(f"{p}.self_attn.o_proj", heads * hd, h, q, dtype)
        if family in ("qwen3", "qwen3_moe"):
            out += [(f"{p}.self_attn.q_norm.weight", dtype, [hd]), (f"{p}.self_attn.k_norm.weight", dtype, [hd])]
        if family == "mixtral":
            out.append((f"{p}.block_sparse_moe.gate.weight", dtype, [experts, h]))
            for e in range(experts):
                x = f"{p}.block_sparse_moe.experts.{e}"
                out += _linear(f"{x}.w1", h, moe_inter, q, dtype) + _linear(f"{x}.w3", h, moe_inter, q, dtype)
                out += _linear(f"{x}.w2", moe_inter, h, q, dtype)
        elif family == "qwen3_moe":
            out.append((f"{p}.mlp.gate.weight", dtype, [experts, h]))
            for e in range(experts):
                x = f"{p}.mlp.experts.{e}"
                out += _linear(f"{x}.gate_proj", h, moe_inter, q, dtype) + _linear(
                    f"{x}.up_proj", h, moe_inter, q, dtype
                )
                out += _linear(f"{x}.down_proj", moe_inter, h, q, dtype)
        elif family == "phi3":
            out += _linear(f"{p}.mlp.gate_up_proj", h, 2 * inter, q, dtype)
            out += _linear(f"{p}.mlp.down_proj", inter, h, q, dtype)
        else:
            for name, k, n in (("gate_proj", h, inter), ("up_proj", h, inter), ("down_proj", inter, h)):
                out += _linear(f"{p}.mlp.{name}", k, n, q, dtype)
        norms = ["input_layernorm", "post_attention_layernorm"]
        if family in ("gemma2", "gemma3_text"):
            norms += ["pre_feedforward_layernorm", "post_feedforward_layernorm"]
        out += [(f"{p}.{norm}.weight", dtype, [h]) for norm in norms]
    out.append(("model.norm.weight", dtype, [h]))
    tied = config.get("tie_word_embeddings", family in ("gemma2", "gemma3_text"))
    if not tied:
        out.append(("lm_head.weight", dtype, [vocab, h]))
    return out


def nbytes(items: list[Item]) -> int:
    return sum(_WIDTH[dtype] * math.prod(shape) for _, dtype, shape in items)


def write_safetensors(path: Path, items: list[Item]) -> int:
    """Write a safetensors file whose data is a hole (sparse); give its data bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in items:
        size = _WIDTH[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def write_checkpoint(
    directory: Path,
    config: dict[str, Any],
    *,
    weights: bool = True,
    tokenizer: bool = True,
    index: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory for `config`: config.json, shards of ~5 GB, the index; give its path.

    `extra` maps more file names to JSON content (quantize_config.json) or to a list of tensors
    (another safetensors file, e.g. Mistral's consolidated.safetensors).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer:
        (directory / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    for name, content in (extra or {}).items():
        if name.endswith(".safetensors"):
            write_safetensors(directory / name, content)
        else:
            (directory / name).write_text(json.dumps(content))
    if not weights:
        return directory
    shards: list[list[Item]] = [[]]
    size = 0
    for item in tensors(config):
        n = nbytes([item])
        if size + n > SHARD_BYTES and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += n
    total = len(shards)
    weight_map = {}
    for i, items in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{total:05d}.safetensors" if total > 1 else "model.safetensors"
        write_safetensors(directory / name, items)
        weight_map.update({t[0]: name for t in items})
    if index and total > 1:
        (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def write_model(directory: Path, preset: str, weights: bool = True, tokenizer: bool = True) -> Path:
    """Write a model directory of a catalog model; give its path."""
    return write_checkpoint(directory, catalog()[preset]["config"], weights=weights, tokenizer=tokenizer)
