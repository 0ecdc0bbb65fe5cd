"""A small real model directory: a Llama-shaped config.json and safetensors with random bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.modelgen import write_safetensors

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 2048,
    "torch_dtype": "float16",
}


def write_tiny_model(directory: Path, files: int = 3, mib: int = 2, seed: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    (directory / "tokenizer.json").write_text('{"version": "1.0"}')
    for i in range(files):
        p = directory / f"model-{i:05d}.safetensors"
        n = mib * 1024 * 1024 // 2
        write_safetensors(p, [(f"layer{i}.weight", "F16", [n])])
        with p.open("r+b") as f:
            f.seek(p.stat().st_size - n * 2)
            f.write(os.urandom(n * 2))
    return directory


def write_spec(directory: Path, model: Path, name: str = "tiny", port: int = 8080) -> Path:
    spec = directory / "deployctl.yaml"
    spec.write_text(
        f"name: {name}\ngpu_model: rtx4090\nmodel:\n  path: {model}\n  quantize: none\nserve:\n  port: {port}\n"
    )
    return spec
