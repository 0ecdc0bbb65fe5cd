"""Read a local model directory (or a catalog entry) into `ModelFacts`: shape, quantization, weight bytes."""

from __future__ import annotations

import json
import math
import struct
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from deployctl.errors import InputError

SUPPORTED_TYPES = {"llama", "mistral", "qwen2"}
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
_SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_MAX_HEADER = 100 * 1024 * 1024
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


class Quantization(BaseModel):
    model_config = ConfigDict(frozen=True)

    method: Literal["gptq", "awq", "none"] = "none"
    bits: int = 16
    group_size: int | None = None
    desc_act: bool | None = None
    sym: bool | None = None


class ModelFacts(BaseModel):
    """What the planner needs to know about a model; everything here was read, or says it was estimated."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str | None
    architecture: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    context_length: int
    dtype: str
    quantization: Quantization
    weight_bytes: int
    weight_bytes_source: Literal["safetensors", "estimate"]
    estimated_weight_bytes: int
    safetensors_files: int = 0
    has_tokenizer: bool = False

    @property
    def dtype_bytes(self) -> int:
        return _DTYPE_BYTES.get(self.dtype, 2)

    @property
    def parameters(self) -> int:
        """Parameter count (unquantized), from the shapes."""
        return _linear_params(self) * self.num_layers + self._embedding_params() + self._norm_params()

    def _embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    def _norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    def kv_bytes_per_token(self) -> int:
        """Bytes of fp16 KV cache one token needs, over all shards together."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype_bytes


def _linear_params(m: ModelFacts | dict[str, int]) -> int:
    get = m.__getitem__ if isinstance(m, dict) else m.__getattribute__
    hidden, heads, kv, hd, inter = (
        get(k) for k in ("hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")
    )
    attention = hidden * heads * hd * 2 + hidden * kv * hd * 2
    mlp = 3 * hidden * inter
    return attention + mlp


def _linear_shapes(m: dict[str, int]) -> list[tuple[int, int]]:
    """(in_features, out_features) of each quantized linear layer in one decoder layer."""
    h, q, kv, inter = (
        m["hidden_size"],
        m["num_heads"] * m["head_dim"],
        m["num_kv_heads"] * m["head_dim"],
        m["intermediate_size"],
    )
    return [(h, q), (h, kv), (h, kv), (q, h), (h, inter), (h, inter), (inter, h)]


def estimate_weight_bytes(shape: dict[str, int], quant: Quantization, model_type: str, dtype_bytes: int = 2) -> int:
    """Give the weight bytes a checkpoint of this shape and quantization holds on disk.

    GPTQ/AWQ (bits b, group g): packed b-bit weights, plus per group an fp16 scale and a
    packed b-bit zero point, plus GPTQ's int32 g_idx per input row. Embeddings, lm_head and
    norms stay in fp16. Qwen2 carries fp16 biases on q, k and v.
    """
    total = 0
    for k, n in _linear_shapes(shape):
        if quant.method in ("gptq", "awq"):
            groups = math.ceil(k / (quant.group_size or k))
            total += k * n * quant.bits // 8  # packed weights
            total += groups * n * 2  # fp16 scales
            total += groups * n * quant.bits // 8  # packed zeros
            if quant.method == "gptq":
                total += k * 4  # g_idx
        else:
            total += k * n * dtype_bytes
    if model_type == "qwen2":
        total += (shape["num_heads"] + 2 * shape["num_kv_heads"]) * shape["head_dim"] * dtype_bytes
    total *= shape["num_layers"]
    h = shape["hidden_size"]
    total += (2 * shape["num_layers"] + 1) * h * dtype_bytes
    total += shape["vocab_size"] * h * dtype_bytes * (1 if shape["tie_word_embeddings"] else 2)
    return total


def _read_quantization(model_dir: Path | None, config: dict[str, Any], where: str) -> Quantization:
    raw = config.get("quantization_config")
    if raw is None and model_dir is not None and (model_dir / "quantize_config.json").is_file():
        raw = _read_json(model_dir / "quantize_config.json")
        raw.setdefault("quant_method", "gptq")
    if raw is None:
        return Quantization()
    method = str(raw.get("quant_method", "gptq")).lower()
    if method not in ("gptq", "awq"):
        raise InputError(f"{where}: quantization method {method!r} is not supported", "use a GPTQ or AWQ checkpoint")
    bits = int(raw.get("bits", raw.get("w_bit", 4)))
    group = raw.get("group_size", raw.get("q_group_size", 128))
    if bits not in (2, 3, 4, 8):
        raise InputError(f"{where}: quantization bits={bits} is not supported (2, 3, 4 or 8)")
    return Quantization(
        method=method,  # type: ignore[arg-type]
        bits=bits,
        group_size=None if group in (None, -1) else int(group),
        desc_act=raw.get("desc_act"),
        sym=raw.get("sym"),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def safetensors_bytes(path: Path) -> int:
    """Give the tensor data bytes a .safetensors file declares, checking the file holds them."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: truncated safetensors file (no header)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > _MAX_HEADER:
                raise InputError(f"{path}: not a safetensors file (header of {header_len} bytes)")
            header = json.loads(f.read(header_len))
        size = path.stat().st_size
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable safetensors header: {exc}") from None
    data_bytes = 0
    end = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        try:
            width = _SAFETENSORS_DTYPE_BYTES[tensor["dtype"]]
            start, stop = tensor["data_offsets"]
            count = math.prod(tensor["shape"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if stop - start != count * width:
            raise InputError(f"{path}: tensor {name!r} size disagrees with its shape")
        data_bytes += stop - start
        end = max(end, stop)
    if size < 8 + header_len + end:
        raise InputError(
            f"{path}: truncated: {size} bytes on disk, header promises {8 + header_len + end}",
            "copy the file again",
        )
    return data_bytes


def _shape(config: dict[str, Any], where: str) -> dict[str, Any]:
    def need(key: str) -> int:
        value = config.get(key)
        if not isinstance(value, int) or value <= 0:
            raise InputError(f"{where}: config.json lacks a positive integer {key!r}")
        return value

    heads = need("num_attention_heads")
    hidden = need("hidden_size")
    head_dim = config.get("head_dim") or hidden // heads
    return {
        "hidden_size": hidden,
        "num_layers": need("num_hidden_layers"),
        "num_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": head_dim,
        "intermediate_size": need("intermediate_size"),
        "vocab_size": need("vocab_size"),
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
    }


def from_config(
    config: dict[str, Any], name: str, model_dir: Path | None = None, where: str | None = None
) -> ModelFacts:
    """Give the facts a config.json describes (weights estimated unless `model_dir` holds safetensors)."""
    where = where or name
    model_type = str(config.get("model_type", "")).lower()
    if model_type not in SUPPORTED_TYPES:
        archs = ", ".join(config.get("architectures") or []) or model_type or "unknown"
        raise InputError(
            f"{where}: architecture {archs} is not supported",
            f"supported: {', '.join(sorted(SUPPORTED_TYPES))} families",
        )
    shape = _shape(config, where)
    quant = _read_quantization(model_dir, config, where)
    dtype = str(config.get("torch_dtype") or "float16")
    if quant.method != "none":
        dtype = "float16"  # GPTQ/AWQ kernels run in fp16
    estimate = estimate_weight_bytes(shape, quant, model_type, _DTYPE_BYTES.get(dtype, 2))
    exact, files, has_tok = None, 0, False
    if model_dir is not None:
        shards = sorted(model_dir.glob("*.safetensors"))
        files = len(shards)
        if shards:
            exact = sum(safetensors_bytes(p) for p in shards)
        has_tok = any((model_dir / f).is_file() for f in TOKENIZER_FILES)
    context = int(config.get("max_position_embeddings") or config.get("max_sequence_length") or 4096)
    return ModelFacts(
        name=name,
        path=str(model_dir) if model_dir else None,
        architecture=(config.get("architectures") or [model_type])[0],
        model_type=model_type,
        num_layers=shape["num_layers"],
        hidden_size=shape["hidden_size"],
        num_heads=shape["num_heads"],
        num_kv_heads=shape["num_kv_heads"],
        head_dim=shape["head_dim"],
        intermediate_size=shape["intermediate_size"],
        vocab_size=shape["vocab_size"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        context_length=context,
        dtype=dtype,
        quantization=quant,
        weight_bytes=exact if exact is not None else estimate,
        weight_bytes_source="safetensors" if exact is not None else "estimate",
        estimated_weight_bytes=estimate,
        safetensors_files=files,
        has_tokenizer=has_tok,
    )


def inspect(model_dir: Path) -> ModelFacts:
    """Give the facts of a local model directory (config.json, quantization, safetensors sizes)."""
    if not model_dir.exists():
        raise InputError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise InputError(f"{model_dir} is not a directory", "model.path names the folder holding config.json")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputError(
            f"{model_dir}: no config.json",
            "point model.path at the folder that holds config.json and the *.safetensors files",
        )
    config = _read_json(config_path)
    # Absolute: compose resolves a relative bind source against the stack directory, not here.
    return from_config(config, model_dir.name, model_dir.absolute(), where=str(config_path))


@cache
def catalog() -> dict[str, dict[str, Any]]:
    """Give the built-in model catalog: preset name -> {description, config}."""
    text = resources.files("deployctl").joinpath("catalog/models.json").read_text()
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def preset(name: str) -> ModelFacts:
    """Give the facts of a catalog model (weights estimated from its config)."""
    entries = catalog()
    if name not in entries:
        raise InputError(f"model preset {name!r} is unknown", f"known: {', '.join(sorted(entries))}")
    return from_config(entries[name]["config"], name)
