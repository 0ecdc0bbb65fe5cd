"""Each engine's start-up memory rule, selected by the spec's engine name."""

from __future__ import annotations

from deployctl.engines import tgi, vllm
from deployctl.engines.memory import EngineRules
from deployctl.errors import InputError

RULES = {"tgi": tgi.MEMORY_RULE, "vllm": vllm.MEMORY_RULE}


def rules_for(engine: str) -> EngineRules:
    """Give the memory rule of the named engine."""
    if engine not in RULES:
        raise InputError(f"engine: {engine!r} is not supported", f"allowed: {', '.join(RULES)}")
    return RULES[engine]
