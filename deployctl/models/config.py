"""config.json as a validated model: types, bounds and the relations between fields, each error naming its key."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deployctl.errors import InputError
from deployctl.terminal import shown

# model_type -> what deployctl knows of the family. Dense families read one MLP per layer;
# MoE families read `experts` routed MLPs per layer (all of them are loaded on every GPU group).
DENSE = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3")
MOE = ("mixtral", "qwen3_moe")
FAMILIES = (*DENSE, "gemma3", *MOE)
# transformers' own defaults for tie_word_embeddings where config.json leaves it out
# (configuration_<family>.py, `__init__` signature): Gemma ties, the others do not.
_TIED_BY_DEFAULT = {"gemma2", "gemma3_text", "gemma3"}

ALLOWED: dict[str, str] = {
    "model_type": f"one of {', '.join(FAMILIES)}",
    "hidden_size": "an integer 1..65536",
    "num_hidden_layers": "an integer 1..1024",
    "num_attention_heads": "an integer 1..1024",
    "num_key_value_heads": "an integer 1..1024 that divides num_attention_heads",
    "head_dim": "an integer 1..1024 (or absent: hidden_size / num_attention_heads)",
    "intermediate_size": "an integer 1..1048576",
    "moe_intermediate_size": "an integer 1..1048576",
    "num_local_experts": "an integer 1..1024",
    "num_experts": "an integer 1..1024",
    "num_experts_per_tok": "an integer 1..num_experts",
    "vocab_size": "an integer 1..4194304",
    "max_position_embeddings": "an integer 1..16777216",
    "tie_word_embeddings": "true or false",
    "torch_dtype": "float16, bfloat16 or float32",
    "quantization_config": "an object with quant_method gptq, awq or compressed-tensors",
    "text_config": "an object (Gemma 3's language model)",
    "architectures": "a list of class names",
}


class TextConfig(BaseModel):
    """The decoder's shape, as config.json states it (strict: no strings for numbers, no floats for ints)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    model_type: str
    architectures: list[str] | None = None
    hidden_size: int = Field(ge=1, le=65536)
    num_hidden_layers: int = Field(ge=1, le=1024)
    num_attention_heads: int = Field(ge=1, le=1024)
    num_key_value_heads: int | None = Field(None, ge=1, le=1024)
    head_dim: int | None = Field(None, ge=1, le=1024)
    intermediate_size: int = Field(ge=1, le=1_048_576)
    moe_intermediate_size: int | None = Field(None, ge=1, le=1_048_576)
    num_local_experts: int | None = Field(None, ge=1, le=1024)
    num_experts: int | None = Field(None, ge=1, le=1024)
    num_experts_per_tok: int | None = Field(None, ge=1, le=1024)
    vocab_size: int = Field(ge=1, le=4_194_304)
    max_position_embeddings: int = Field(4096, ge=1, le=16_777_216)
    tie_word_embeddings: bool | None = None
    torch_dtype: Literal["float16", "bfloat16", "float32"] | None = None
    quantization_config: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _relations(self) -> TextConfig:
        kv = self.num_key_value_heads or self.num_attention_heads
        if kv > self.num_attention_heads or self.num_attention_heads % kv:
            raise ValueError(
                f"num_key_value_heads: {kv} does not divide num_attention_heads {self.num_attention_heads}"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"num_attention_heads: {self.num_attention_heads} does not divide hidden_size {self.hidden_size}"
                " and there is no head_dim"
            )
        experts = self.experts
        if self.model_type in MOE and not experts:
            raise ValueError("num_experts: a mixture-of-experts config needs the number of experts")
        if experts and (self.num_experts_per_tok or 0) > experts:
            raise ValueError(f"num_experts_per_tok: {self.num_experts_per_tok} is more than the {experts} experts")
        return self

    @property
    def experts(self) -> int:
        return self.num_local_experts or self.num_experts or 0

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def expert_intermediate(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size

    def tied(self) -> bool:
        if self.tie_word_embeddings is not None:
            return self.tie_word_embeddings
        return self.model_type in _TIED_BY_DEFAULT


def _message(where: str, err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if ": " in msg and msg.split(": ", 1)[0] in ALLOWED and err["type"] == "value_error":
        key, msg = msg.split(": ", 1)
    allowed = ALLOWED.get(loc[-1] if loc and loc[-1] in ALLOWED else key.split(".")[-1], "")
    got = "" if err["type"] in ("missing", "value_error") else f" (got {str(err.get('input'))[:40]!r})"
    return f"{where}: {key}: {msg}{got}" + (f"; allowed: {allowed}" if allowed else "")


def parse(raw: dict[str, Any], where: str) -> TextConfig:
    """Give the validated decoder config of a config.json's content (Gemma 3: its text_config)."""
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        archs = raw.get("architectures")
        # Escaped: a class name such as "\x1e" would otherwise split the one-line error in two.
        named = ", ".join(shown(a) for a in archs if isinstance(a, str)) if isinstance(archs, list) else ""
        raise InputError(
            f"{where}: model_type: {str(model_type)[:40]!r}{f' ({named})' if named else ''} is not supported; "
            f"allowed: {ALLOWED['model_type']}"
        )
    data = raw
    if model_type == "gemma3":
        text = raw.get("text_config")
        if not isinstance(text, dict):
            raise InputError(f"{where}: text_config: missing or not an object; allowed: {ALLOWED['text_config']}")
        data = {**text, "model_type": "gemma3", "architectures": raw.get("architectures")}
        for key in ("quantization_config", "torch_dtype", "tie_word_embeddings"):
            if key in raw and key not in text:
                data[key] = raw[key]
    if "quantization_config" in data and not isinstance(data["quantization_config"], dict | None):
        kind = type(data["quantization_config"]).__name__
        raise InputError(f"{where}: quantization_config: a {kind}; allowed: {ALLOWED['quantization_config']}")
    if "torch_dtype" not in data and "dtype" in data:
        data = {**data, "torch_dtype": data["dtype"]}  # transformers >= 4.56 writes `dtype`
    if data.get("head_dim") is None:
        data = {k: v for k, v in data.items() if k != "head_dim"}
    try:
        return TextConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(_message(where, dict(exc.errors()[0]))) from None
