"""Build the simulator image, and base images made of Debian packages (no registry needed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import deployctl
from deployctl import __version__, docker, tools
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.progress import Progress

# DEPLOYCTL_DEBIAN_BASE: the test suite keeps its cached base under a name of its own.
DEBIAN_BASE = os.environ.get("DEPLOYCTL_DEBIAN_BASE") or "deployctl/debian-base:bookworm"
REGISTRY_BASE = "python:3.11-slim"
DEBIAN_PACKAGES = ("python3-minimal", "python3-aiohttp", "curl", "ca-certificates")


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    size: int
    base: str


def build_debian_base(tag: str = DEBIAN_BASE, suite: str = "bookworm", progress: Progress | None = None) -> BuiltImage:
    """Give a base image built from Debian packages with mmdebstrap and `docker import`."""
    if not shutil.which("mmdebstrap"):
        raise EnvironmentProblem(
            "mmdebstrap is not installed", "apt-get install mmdebstrap, or pass --base-image IMAGE"
        )
    with tempfile.TemporaryDirectory(prefix="deployctl-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=apt", f"--include={','.join(DEBIAN_PACKAGES)}", suite, str(rootfs)]
        if progress:
            progress(f"mmdebstrap {suite} with {', '.join(DEBIAN_PACKAGES)}")
        try:
            tools.run(cmd, timeout=None)
        except tools.ToolError as exc:
            raise DeployctlError(f"mmdebstrap failed: {tools.last_line(exc.stderr)}") from None
        image = docker.import_rootfs(rootfs, tag)
    return BuiltImage(tag=tag, image_id=image.id, size=image.size, base=f"debian:{suite} (mmdebstrap)")


def choose_sim_base(explicit: str | None, progress: Progress | None = None) -> str:
    """Give the base for the simulator image: the one asked for, a local Debian base, or python:3.11-slim."""
    if explicit:
        return explicit
    env = os.environ.get("DEPLOYCTL_SIM_BASE")
    if env:
        return env
    if docker.image_exists(DEBIAN_BASE):
        return DEBIAN_BASE
    if docker.image_exists(REGISTRY_BASE):
        return REGISTRY_BASE
    if shutil.which("mmdebstrap"):
        return build_debian_base(progress=progress).tag
    return REGISTRY_BASE


def _sim_context(dest: Path) -> None:
    """Copy what the simulator image needs: deployctl/__init__.py and deployctl/sim/."""
    package = Path(deployctl.__file__).parent
    (dest / "deployctl" / "sim").mkdir(parents=True)
    shutil.copy2(package / "__init__.py", dest / "deployctl" / "__init__.py")
    for source in (package / "sim").glob("*.py"):
        shutil.copy2(source, dest / "deployctl" / "sim" / source.name)
    dockerfile = resources.files("deployctl").joinpath("images/sim.Dockerfile").read_text()
    (dest / "Dockerfile").write_text(dockerfile)


def build(context: Path, tag: str, buildargs: dict[str, str], progress: Progress | None = None) -> str:
    """Build the image in `context`, streaming the build's lines to `progress`; give its id."""
    return docker.build_image(context, tag, buildargs, progress)


def build_sim(base_image: str | None = None, tag: str = SIM_IMAGE, progress: Progress | None = None) -> BuiltImage:
    """Build the simulator image and give what was built."""
    base = choose_sim_base(base_image, progress)
    if not base.strip():
        raise InputError("--base-image is empty")
    with tempfile.TemporaryDirectory(prefix="deployctl-sim-") as tmp:
        ctx = Path(tmp)
        _sim_context(ctx)
        image_id = build(ctx, tag, {"BASE_IMAGE": base, "VERSION": __version__}, progress)
    image = docker.image(image_id)
    return BuiltImage(tag=tag, image_id=image.id, size=image.size, base=base)
