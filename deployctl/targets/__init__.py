"""Targets: the engine-neutral Workload (workload.py), the one render context and the `Target` interface
(base.py), and one module per target (compose.py, helm.py).

`render` is the one render path: `render`, `up`, `bundle create` and `k8s up` all come through it.
"""

from __future__ import annotations

from typing import Any

from deployctl.errors import InputError
from deployctl.plan import Plan
from deployctl.targets.base import RenderContext, RenderOptions, Target, context

NAMES = ("compose", "helm")


def get(name: str) -> Target[Any, Any]:
    """Give the target called `name` (compose or helm)."""
    if name == "compose":
        from deployctl.targets.compose import COMPOSE

        return COMPOSE
    if name == "helm":
        from deployctl.targets.helm import HELM

        return HELM
    raise InputError(f"no target {name!r}", f"choose one of {', '.join(NAMES)}")


def render(plan: Plan, target: str, options: RenderOptions) -> dict[str, bytes]:
    """Give the files of `plan` for `target`, rendered from the one context (the same input gives the same bytes)."""
    return get(target).render(context(plan, options))


__all__ = ["NAMES", "RenderContext", "RenderOptions", "Target", "context", "get", "render"]
