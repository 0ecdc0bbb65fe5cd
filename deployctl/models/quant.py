"""The checkpoint's quantization, read from the checkpoint itself (each engine maps it to its own flag)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from deployctl.errors import InputError

Method = Literal["gptq", "awq", "compressed-tensors", "none"]
_GROUPS = (-1, 32, 64, 128, 256, 512, 1024)
_ALLOWED = (
    "quant_method gptq (bits 2, 3, 4 or 8), awq (bits 4) or compressed-tensors (int weights, 4 or 8 bits, "
    f"no activation quantization); group_size one of {', '.join(map(str, _GROUPS))}"
)


class Quantization(BaseModel):
    model_config = ConfigDict(frozen=True)

    method: Method = "none"
    bits: int = 16
    group_size: int | None = None  # None: one scale per output channel (-1 in GPTQ configs)
    desc_act: bool | None = None  # act-order: GPTQ desc_act, compressed-tensors actorder "group"
    sym: bool | None = None
    source: Literal["config.json", "quantize_config.json", "none"] = "none"
    # compressed-tensors `actorder` as written: "group", "dynamic", "weight" (static) or None.
    actorder: str | None = None
    # GPTQModel `dynamic`: the first positive rule (not "-:") whose module gets act-order with groups
    # (its own or the base desc_act, with a group size other than -1); None when there is none.
    dynamic_act_order: str | None = None

    @property
    def act_order(self) -> bool:
        """Whether the checkpoint reorders a group's columns by activation (desc_act, actorder group/dynamic)."""
        return bool(self.desc_act) or self.actorder in ("group", "dynamic") or self.dynamic_act_order is not None


def _bad(where: str, key: str, value: Any) -> InputError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return InputError(f"{where}: {key}: {shown} is not supported; allowed: {_ALLOWED}")


def _int(raw: dict[str, Any], keys: tuple[str, ...], default: int) -> tuple[str, Any]:
    for key in keys:
        if key in raw:
            return key, raw[key]
    return keys[0], default


def _group(where: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value not in _GROUPS:
        raise _bad(where, key, value)
    return None if value == -1 else value


def _compressed(raw: dict[str, Any], where: str) -> Quantization:
    groups = raw.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise _bad(where, "quantization_config.config_groups", groups)
    name, group = next(iter(groups.items()))
    key = f"quantization_config.config_groups.{name}"
    if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
        raise _bad(where, f"{key}.weights", group)
    if group.get("input_activations") is not None:
        raise _bad(where, f"{key}.input_activations", group["input_activations"])
    w = group["weights"]
    if w.get("type", "int") != "int":
        raise _bad(where, f"{key}.weights.type", w.get("type"))
    bits = w.get("num_bits")
    if type(bits) is not int or bits not in (4, 8):
        raise _bad(where, f"{key}.weights.num_bits", bits)
    strategy = w.get("strategy")
    if strategy not in ("group", "channel"):
        raise _bad(where, f"{key}.weights.strategy", strategy)
    size = _group(where, f"{key}.weights.group_size", w.get("group_size")) if strategy == "group" else None
    sym = w.get("symmetric", True)
    return Quantization(
        method="compressed-tensors",
        bits=bits,
        group_size=size,
        desc_act=w.get("actorder") == "group",
        sym=sym if isinstance(sym, bool) else None,
        source="config.json",
        actorder=w.get("actorder") if isinstance(w.get("actorder"), str) else None,
    )


def _dynamic_act_order(raw: dict[str, Any], desc_act: bool, group: Any) -> str | None:
    """Give the first positive GPTQModel `dynamic` rule that turns on act-order with groups, or None.

    The same reading as vLLM's (0.30.0-0.34.0 `quantization/utils/gptq_utils.py`
    `normalize_and_validate_gptq_desc_act`): a rule's desc_act and group_size default to the base ones,
    rules starting "-:" exclude modules and are skipped.
    """
    dynamic = raw.get("dynamic")
    if not isinstance(dynamic, dict):
        return None
    for pattern, overrides in dynamic.items():
        if not isinstance(pattern, str) or pattern.startswith("-:") or not isinstance(overrides, dict):
            continue
        if overrides.get("desc_act", desc_act) and overrides.get("group_size", group) != -1:
            return pattern[:80]
    return None


def read(raw: Any, where: str, source: Literal["config.json", "quantize_config.json"]) -> Quantization:
    """Give the quantization a quantization_config (or quantize_config.json) object describes."""
    if raw is None:
        return Quantization()
    if not isinstance(raw, dict):
        raise _bad(where, "quantization_config", type(raw).__name__)
    method = raw.get("quant_method", "gptq" if source == "quantize_config.json" else None)
    if not isinstance(method, str) or method.lower() not in ("gptq", "awq", "compressed-tensors"):
        raise _bad(where, "quantization_config.quant_method", method)
    method = method.lower()
    if method == "compressed-tensors":
        return _compressed(raw, where)
    bits_key, bits = _int(raw, ("bits", "w_bit"), 4)
    if type(bits) is not int or bits not in ((4,) if method == "awq" else (2, 3, 4, 8)):
        raise _bad(where, f"quantization_config.{bits_key}", bits)
    group_key, group = _int(raw, ("group_size", "q_group_size"), 128)
    desc_act = raw.get("desc_act")
    sym = raw.get("sym")
    if method == "awq" and isinstance(raw.get("zero_point"), bool):
        sym = not raw["zero_point"]
    return Quantization(
        method=method,  # type: ignore[arg-type]
        bits=bits,
        group_size=_group(where, f"quantization_config.{group_key}", group),
        desc_act=desc_act if isinstance(desc_act, bool) else None,
        sym=sym if isinstance(sym, bool) else None,
        source=source,
        dynamic_act_order=_dynamic_act_order(raw, desc_act is True, group) if method == "gptq" else None,
    )
