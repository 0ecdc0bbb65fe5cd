"""Serving engines: one module each (tgi.py, vllm.py), registered by name; base.py says what an engine owns.

Adding an engine is its module plus one line in BUILT_IN (or one `register(engine)` call from outside).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deployctl.engines import dialects
from deployctl.engines.security import shm_bytes
from deployctl.errors import InputError
from deployctl.terminal import shown

if TYPE_CHECKING:
    from deployctl.engines.base import Engine

# name -> module holding ENGINE; modules load when first asked for (the planner imports this package early).
BUILT_IN = {
    "tgi": "deployctl.engines.tgi",
    "vllm": "deployctl.engines.vllm",
}
_REGISTERED: dict[str, Engine] = {}


def register(engine: Engine) -> None:
    """Make `engine` known under its name (and its dialect under the dialect's), beside the built-in ones."""
    if engine.name in BUILT_IN:
        raise ValueError(f"engine {engine.name!r} is built in")
    _REGISTERED[engine.name] = engine
    dialects.add(engine.dialect)


def names() -> list[str]:
    """Give the names `engine:` accepts."""
    return [*BUILT_IN, *_REGISTERED]


def get(name: str) -> Engine:
    """Give the engine registered as `name`; InputError for an unknown one."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in BUILT_IN:
        raise InputError(f"engine: {shown(name, 40)!r} is not supported", f"allowed: {', '.join(names())}")
    engine: Engine = importlib.import_module(BUILT_IN[name]).ENGINE
    return engine


def with_engine_facts(plan: dict[str, Any]) -> dict[str, Any]:
    """Give a plan's JSON data with the engine facts that plans written before they were recorded lack.

    Those facts (dialect, key variable, probe tool, start budget, security) are looked up once here, by
    the engine's name, so a stack rendered by an older deployctl still loads (status, down, rollback).
    """
    section = plan.get("engine")
    if not isinstance(section, dict) or "dialect" in section:
        return plan
    engine = get(str(section.get("kind", "tgi")))
    gpus = plan.get("gpus")
    weights = sum(
        g["weights"]
        for g in (gpus if isinstance(gpus, list) else [])
        if isinstance(g, dict) and isinstance(g.get("weights"), int)
    )
    shards = plan.get("num_shard")
    shards = shards if isinstance(shards, int) else 1
    shm = section.get("shm_size")
    security = engine.container_security(weights, shards, shm_bytes(shm if isinstance(shm, str) else None))
    facts = {
        "dialect": engine.dialect.name,
        "api_key_env": engine.api_key_env,
        "probe_tool": engine.probe_tool,
        "start_budget_s": engine.start_budget_s(weights),
        "security": security.model_dump(),
    }
    return {**plan, "engine": {**section, **facts}}
