"""Read a local model directory (or a catalog entry) into `ModelFacts`: shape, quantization, weight bytes and their layout."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from deployctl import safepath
from deployctl.errors import InputError
from deployctl.models import config as hf_config
from deployctl.models import layout, quant
from deployctl.models.layout import WeightLayout
from deployctl.models.quant import Quantization
from deployctl.models.safetensors import read_header

__all__ = ["ModelFacts", "Quantization", "WeightLayout", "catalog", "from_config", "inspect", "preset"]

_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
INDEX = "model.safetensors.index.json"
# The names `save_pretrained` gives shards (transformers `modeling_utils.py`, SAFE_WEIGHTS_NAME and
# the "-00001-of-00004" pattern of `huggingface_hub.split_torch_state_dict_into_shards`).
_HF_SHARD = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$")
MAX_JSON = 50_000_000
# Files holding less than half of what config.json implies are a partial copy or the wrong config
# (a 4-bit checkpoint whose config lost its quantization_config holds ~28% of the fp16 estimate).
MIN_SHARE_OF_ESTIMATE = 0.5  # config.json and the index are kilobytes; refuse to parse anything huge


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
    layout: WeightLayout
    experts: int = 0
    experts_per_token: int = 0
    expert_intermediate_size: int = 0
    safetensors_files: int = 0
    ignored_files: list[str] = []
    has_tokenizer: bool = False

    @property
    def dtype_bytes(self) -> int:
        return _DTYPE_BYTES.get(self.dtype, 2)

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def _mlp_params(self, experts: int) -> int:
        if not self.is_moe:
            return 3 * self.hidden_size * self.intermediate_size
        return 3 * self.hidden_size * self.expert_intermediate_size * experts + self.hidden_size * self.experts

    def _params(self, experts: int) -> int:
        attention = 2 * self.hidden_size * self.num_heads * self.head_dim
        attention += 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        norms = (2 * self.num_layers + 1) * self.hidden_size
        return (attention + self._mlp_params(experts)) * self.num_layers + embeddings + norms

    @property
    def parameters(self) -> int:
        """Parameter count (unquantized, all experts), from the shapes."""
        return self._params(self.experts)

    @property
    def active_parameters(self) -> int:
        """Parameters one token goes through (MoE: only the routed experts)."""
        return self._params(self.experts_per_token) if self.is_moe else self.parameters

    def kv_bytes_per_token(self, kv_dtype_bytes: int | None = None) -> int:
        """Bytes of KV cache one token needs, over all GPUs together."""
        width = kv_dtype_bytes or self.dtype_bytes
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * width

    def shard_weight_bytes(self, shards: int, *, tied_copy: bool, scales_whole: bool) -> int:
        """Give the weight bytes each GPU holds when split over `shards` GPUs (the engine's placement rules).

        `tied_copy`: a tied lm_head is loaded as a second copy of the embedding; `scales_whole`: the
        row-parallel layers' scales and zeros stay whole on every GPU (see models/layout.py).
        """
        return self.layout.per_shard(shards, kv_heads=self.num_kv_heads, scales_whole=scales_whole, tied_copy=tied_copy)

    def sharding_problem(self, shards: int) -> str | None:
        """Give why the engines cannot split this model over `shards` GPUs, or None when they can."""
        if self.num_heads % shards:
            return f"its {self.num_heads} attention heads do not split over {shards} GPUs"
        g = self.quantization.group_size
        if shards == 1 or not g or self.quantization.method == "none":
            return None
        mlp = self.expert_intermediate_size if self.is_moe else self.intermediate_size
        for layer, features in (("o_proj", self.num_heads * self.head_dim), ("down_proj", mlp)):
            if (features // shards) % g or features % shards:
                return (
                    f"{layer} has {features} input features: {features} / {shards} GPUs is not a multiple of"
                    f" the quantization group size {g} (the engine asserts this when it loads the shards)"
                )
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON:
            raise InputError(f"{path}: {path.stat().st_size} bytes is too large for a config file")
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, found a {type(data).__name__}")
    return data


def weight_files(model_dir: Path) -> tuple[list[Path], list[str]]:
    """Give the safetensors files the engine loads, and those it ignores.

    With an index, exactly the files its weight_map names; without one, the HF-named shards
    (Mistral's `consolidated.safetensors` beside them is another copy of the same weights).
    """
    present = sorted(p.name for p in model_dir.glob("*.safetensors"))
    index = model_dir / INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError(f"{index}: weight_map: not an object of tensor name -> file name")
        named = sorted(set(weight_map.values()))
        for name in named:
            safepath.check_name(name, f"{index}: weight_map file")
            if name not in present:
                raise InputError(
                    f"{index}: weight_map names {name}, which is not in {model_dir}", "copy the model again"
                )
        chosen = named
    else:
        chosen = [n for n in present if _HF_SHARD.match(n)] or [n for n in present if not n.startswith("consolidated")]
    return [model_dir / n for n in chosen], [n for n in present if n not in chosen]


def _dtype(c: hf_config.TextConfig, q: Quantization) -> str:
    # GPTQ and AWQ kernels run in fp16 (both engines cast these checkpoints to float16).
    if q.method in ("gptq", "awq"):
        return "float16"
    return c.torch_dtype or "float16"


def from_config(
    config: dict[str, Any], name: str, model_dir: Path | None = None, where: str | None = None
) -> ModelFacts:
    """Give the facts a config.json describes (weights estimated unless `model_dir` holds safetensors)."""
    where = where or name
    c = hf_config.parse(config, where)
    q = quant.read(c.quantization_config, where, "config.json")
    if q.method == "none" and model_dir is not None and (model_dir / "quantize_config.json").is_file():
        q = quant.read(
            _read_json(model_dir / "quantize_config.json"),
            str(model_dir / "quantize_config.json"),
            "quantize_config.json",
        )
    dtype = _dtype(c, q)
    estimate = layout.estimate(c, q, _DTYPE_BYTES[dtype])
    lay, source, files, has_tok = estimate, "estimate", 0, False
    ignored: list[str] = []
    if model_dir is not None:
        paths, ignored = weight_files(model_dir)
        if paths:
            tensors = [t for p in paths for t in read_header(p)]
            lay, source, files = layout.from_tensors(tensors, c.tied()), "safetensors", len(paths)
            if lay.total < estimate.total * MIN_SHARE_OF_ESTIMATE:
                raise InputError(
                    f"{model_dir}: {', '.join(p.name for p in paths)[:120]} hold {lay.total / 1e9:.2f} GB of weights,"
                    f" but config.json describes about {estimate.total / 1e9:.2f} GB ({q.method if q.method != 'none' else dtype})",
                    "shards are missing, or config.json does not belong to these weights (a quantization config left out?)",
                )
        has_tok = any((model_dir / f).is_file() for f in TOKENIZER_FILES)
    return ModelFacts(
        name=name,
        path=str(model_dir) if model_dir else None,
        architecture=(c.architectures or [c.model_type])[0],
        model_type=c.model_type,
        num_layers=c.num_hidden_layers,
        hidden_size=c.hidden_size,
        num_heads=c.num_attention_heads,
        num_kv_heads=c.kv_heads,
        head_dim=c.head_size,
        intermediate_size=c.intermediate_size,
        vocab_size=c.vocab_size,
        tie_word_embeddings=c.tied(),
        context_length=c.max_position_embeddings,
        dtype=dtype,
        quantization=q,
        weight_bytes=lay.total,
        weight_bytes_source=source,  # type: ignore[arg-type]
        estimated_weight_bytes=estimate.total,
        layout=lay,
        experts=c.experts,
        # transformers' MixtralConfig defaults num_experts_per_tok to 2 (configuration_mixtral.py)
        experts_per_token=c.num_experts_per_tok or (2 if c.experts else 0),
        expert_intermediate_size=c.expert_intermediate if c.experts else 0,
        safetensors_files=files,
        ignored_files=ignored,
        has_tokenizer=has_tok,
    )


def inspect(model_dir: Path) -> ModelFacts:
    """Give the facts of a local model directory (config.json, quantization, safetensors headers)."""
    if not model_dir.exists():
        raise InputError(
            f"model directory {model_dir} does not exist",
            "put the model's folder there or point model.path (--model DIR) at it; without weights, plan a "
            "catalog model with --preset NAME (e.g. llama-3.1-8b-instruct-gptq), as `up --simulate` does",
        )
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
