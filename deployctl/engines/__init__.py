"""Serving engines: one module each (tgi.py, vllm.py), registered by name; base.py says what an engine owns."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployctl.engines.base import Engine

# name -> module holding ENGINE; modules load lazily (the planner imports this package early).
REGISTRY = {"tgi": "deployctl.engines.tgi", "vllm": "deployctl.engines.vllm"}


def names() -> list[str]:
    """Give the names `engine:` accepts."""
    return list(REGISTRY)


def get(name: str) -> Engine:
    """Give the engine registered as `name`; InputError for an unknown one."""
    import importlib

    from deployctl.errors import InputError

    if name not in REGISTRY:
        raise InputError(f"engine: {name!r} is not supported", f"allowed: {', '.join(REGISTRY)}")
    engine: Engine = importlib.import_module(REGISTRY[name]).ENGINE
    return engine
