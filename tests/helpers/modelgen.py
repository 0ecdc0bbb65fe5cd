"""Write test model directories: a real config.json and GPTQ safetensors of the real sizes (sparse)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from deployctl.models import catalog

SHARD_BYTES = 5 * 10**9  # checkpoints are cut into ~5 GB files


def _gptq_linear(prefix: str, k: int, n: int, bits: int, group: int) -> list[tuple[str, str, list[int]]]:
    """The four tensors AutoGPTQ writes for one quantized linear layer (in k, out n)."""
    pack = 32 // bits
    return [
        (f"{prefix}.qweight", "I32", [k // pack, n]),
        (f"{prefix}.qzeros", "I32", [k // group, n // pack]),
        (f"{prefix}.scales", "F16", [k // group, n]),
        (f"{prefix}.g_idx", "I32", [k]),
    ]


def tensors(config: dict[str, Any]) -> list[tuple[str, str, list[int]]]:
    """List (name, dtype, shape) of every tensor in a GPTQ checkpoint of this config."""
    q = config["quantization_config"]
    bits, group = q["bits"], q["group_size"]
    h, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim") or h // heads
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    out: list[tuple[str, str, list[int]]] = [("model.embed_tokens.weight", "F16", [vocab, h])]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        for name, k, n in (
            ("q_proj", h, heads * hd),
            ("k_proj", h, kv * hd),
            ("v_proj", h, kv * hd),
            ("o_proj", heads * hd, h),
        ):
            out += _gptq_linear(f"{p}.self_attn.{name}", k, n, bits, group)
            if config["model_type"] == "qwen2" and name != "o_proj":
                out.append((f"{p}.self_attn.{name}.bias", "F16", [n]))
        for name, k, n in (("gate_proj", h, inter), ("up_proj", h, inter), ("down_proj", inter, h)):
            out += _gptq_linear(f"{p}.mlp.{name}", k, n, bits, group)
        out += [(f"{p}.input_layernorm.weight", "F16", [h]), (f"{p}.post_attention_layernorm.weight", "F16", [h])]
    out.append(("model.norm.weight", "F16", [h]))
    if not config.get("tie_word_embeddings"):
        out.append(("lm_head.weight", "F16", [vocab, h]))
    return out


_WIDTH = {"F16": 2, "I32": 4, "F32": 4}


def write_safetensors(path: Path, items: list[tuple[str, str, list[int]]]) -> int:
    """Write a safetensors file whose data is a hole (sparse); give its data bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in items:
        size = _WIDTH[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return offset


def write_model(directory: Path, preset: str, weights: bool = True, tokenizer: bool = True) -> Path:
    """Write a model directory of a catalog model; give its path."""
    config = catalog()[preset]["config"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if tokenizer:
        (directory / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    if not weights:
        return directory
    shards: list[list[tuple[str, str, list[int]]]] = [[]]
    size = 0
    for item in tensors(config):
        n = _WIDTH[item[1]]
        for d in item[2]:
            n *= d
        if size + n > SHARD_BYTES and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += n
    total = len(shards)
    weight_map = {}
    for i, items in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{total:05d}.safetensors"
        write_safetensors(directory / name, items)
        weight_map.update({t[0]: name for t in items})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory
