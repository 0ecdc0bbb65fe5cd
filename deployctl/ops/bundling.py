"""Bundle workflows: create (plan, choose images, gather) and install (verify, load, place, render)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from deployctl.ops import planning
from deployctl.progress import Progress
from deployctl.spec import DeploymentSpec


def create(
    spec: DeploymentSpec,
    *,
    output: Path,
    images: list[str],
    sign_key: Path | None,
    wheels: str,
    simulate: bool,
    as_tar: bool,
    split_size: int | None,
    progress: Progress,
    target: str = "compose",
    base: Path | None = None,
) -> Any:
    """Plan the spec and gather its images (default: the engine's, or the simulator's), weights and stack."""
    from deployctl.bundle import create as core
    from deployctl.engines.simulator import SIM_IMAGE
    from deployctl.monitoring.render import profile_images

    plan = planning.make_plan(spec, simulate=simulate)
    # The monitoring profile's images travel with the engine's when the spec turns the profile on.
    chosen = images or [
        SIM_IMAGE if simulate else plan.engine.image,
        *profile_images(spec.monitoring, simulate=simulate),
    ]
    return core.create(
        spec, plan, output, chosen, sign_key, wheels, simulate, as_tar, split_size, progress, target=target, base=base
    )


def install(
    path: Path,
    *,
    target: Path,
    pubkey: Path | None,
    insecure: bool,
    simulate: bool,
    progress: Progress,
    say: Callable[[str], None] | None,
    base: Path | None = None,
) -> Any:
    """Verify the bundle, load its images, place its model, then render its stack for this host."""
    from deployctl import spec as spec_mod
    from deployctl.bundle import install as core

    def render(spec_path: Path) -> Path:
        s = spec_mod.load(spec_path)
        return planning.render_stack(s, planning.make_plan(s, simulate=simulate), simulate=simulate)

    return core.install(path, target, pubkey, insecure, simulate, progress, say, render=render, base=base)


def export_images(
    path: Path,
    *,
    output: Path,
    pubkey: Path | None,
    insecure: bool,
    progress: Progress,
    say: Callable[[str], None] | None,
    base: Path | None = None,
) -> Any:
    """Write the bundle's images, each blob verified, as one archive for Kubernetes nodes (ctr) or docker load."""
    from deployctl.bundle import install as core

    return core.export_images(path, output, pubkey, insecure, progress, say=say, base=base)
