"""Bundle workflows: create (plan, choose images, gather) and install (verify, load, place, render)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployctl.ops import planning
from deployctl.progress import Progress
from deployctl.spec import DeploymentSpec

if TYPE_CHECKING:
    from deployctl.bundle.create import Created
    from deployctl.bundle.diff import Diff
    from deployctl.bundle.install import Exported, Installed, Verified


def create(
    spec: DeploymentSpec,
    *,
    output: Path,
    images: list[str],
    sign_key: Path | None,
    wheels: str,
    simulate: bool,
    as_tar: bool,
    split: str | None,
    progress: Progress,
    target: str = "compose",
    base: Path | None = None,
    revision: int | None = None,
) -> Created:
    """Plan the spec and gather its images (default: the engine's, or the simulator's), weights and stack.

    `split` is the largest part of a --split bundle as text (4G, 4480M), checked before anything is planned."""
    from deployctl.bundle import create as core
    from deployctl.bundle.format import parse_size
    from deployctl.engines.simulator import SIM_IMAGE
    from deployctl.monitoring.render import profile_images

    split_size = parse_size(split) if split else None
    plan = planning.make_plan(spec, simulate=simulate)
    # The monitoring profile's images travel with the engine's when the spec turns the profile on.
    chosen = images or [
        SIM_IMAGE if simulate else plan.engine.image,
        *profile_images(spec.monitoring, simulate=simulate),
    ]
    return core.create(
        spec,
        plan,
        output,
        chosen,
        sign_key,
        wheels,
        simulate,
        as_tar,
        split_size,
        progress,
        target=target,
        base=base,
        revision=revision,
    )


def keygen(private_key: Path) -> str:
    """Write an ed25519 key pair (`private_key`, mode 0600, and `private_key`.pub); give its fingerprint."""
    from deployctl.bundle import signing

    return signing.keygen(private_key, private_key.with_name(private_key.name + ".pub"))


def verify(path: Path, *, pubkey: Path | None, insecure: bool, progress: Progress) -> Verified:
    """Check a bundle's completeness, every checksum and its signature; give what was verified."""
    from deployctl.bundle import install as core

    return core.verify(path, pubkey, insecure, progress)


def diff(old: Path, new: Path) -> Diff:
    """Give what upgrading from bundle `old` to `new` changes, and what a delta over `old` carries."""
    from deployctl.bundle import diff as core

    return core.diff(old, new)


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
    allow_downgrade: bool = False,
) -> Installed:
    """Verify the bundle, check this host can run it, then load its images, place its model and render its stack."""
    from deployctl import spec as spec_mod
    from deployctl.bundle import install as core

    def render(spec_path: Path) -> Path:
        s = spec_mod.load(spec_path)
        return planning.render_stack(s, planning.make_plan(s, simulate=simulate), simulate=simulate)

    def check_site(spec_bytes: bytes, manifest: Any) -> None:
        _check_site(spec_bytes, manifest.plan, simulate=simulate)

    return core.install(
        path,
        target,
        pubkey,
        insecure,
        simulate,
        progress,
        say,
        render=render,
        check_site=check_site,
        base=base,
        allow_downgrade=allow_downgrade,
    )


def _check_site(spec_bytes: bytes, plan: dict[str, Any], *, simulate: bool) -> None:
    """What rendering the bundled spec will need here, checked before the install writes anything.

    The API key's variable, the NVIDIA driver (or --simulate), and the plan fitting this host's GPUs:
    the model is not on disk yet, so the plan's model facts (from the same, signed files) stand in.
    """
    from pydantic import ValidationError

    from deployctl import planner
    from deployctl import spec as spec_mod
    from deployctl.bundle.format import BundleError
    from deployctl.hardware import inventory
    from deployctl.models import ModelFacts

    s = spec_mod.parse(spec_bytes.decode(), "spec/deployctl.yaml in the bundle")
    s.resolve_api_key()
    try:
        facts = ModelFacts.model_validate(plan.get("model"))
    except ValidationError:
        raise BundleError("manifest.json: plan.model is not a model description this deployctl reads") from None
    host = inventory.host_for(s.gpu_model, s.gpu_count, planning.SIMULATED_GPU if simulate else None)
    planner.plan(s, facts, host, simulate=simulate)


def export_images(
    path: Path,
    *,
    output: Path,
    pubkey: Path | None,
    insecure: bool,
    progress: Progress,
    say: Callable[[str], None] | None,
    base: Path | None = None,
) -> Exported:
    """Write the bundle's images, each blob verified, as one archive for Kubernetes nodes (ctr) or docker load."""
    from deployctl.bundle import install as core

    return core.export_images(path, output, pubkey, insecure, progress, say=say, base=base)
