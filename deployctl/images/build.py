"""Build the simulator image, and base images made of Debian packages (no registry needed)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import deployctl
from deployctl import __version__, docker, tools
from deployctl.engines.simulator import SIM_IMAGE
from deployctl.errors import DeployctlError, EnvironmentProblem, InputError
from deployctl.monitoring.render import EXPORTER_IMAGE
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
    return _build_on_base(_sim_context, base_image, tag, progress)


def _build_on_base(
    context: Callable[[Path], None], base_image: str | None, tag: str, progress: Progress | None
) -> BuiltImage:
    """Give the image built from the context `context` writes, on the base build-sim would choose."""
    base = choose_sim_base(base_image, progress)
    if not base.strip():
        raise InputError("--base-image is empty")
    with tempfile.TemporaryDirectory(prefix="deployctl-image-") as tmp:
        ctx = Path(tmp)
        context(ctx)
        image_id = build(ctx, tag, {"BASE_IMAGE": base, "VERSION": __version__}, progress)
    image = docker.image(image_id)
    return BuiltImage(tag=tag, image_id=image.id, size=image.size, base=base)


# What `python3 -m deployctl.monitoring.exporter` imports: its own modules and these packages.
EXPORTER_MODULES = (
    "__init__.py",
    "errors.py",
    "failpoints.py",
    "fsio.py",
    "gpus/__init__.py",
    "gpus/catalogue.py",
    "gpus/gpu.py",
    "hardware/__init__.py",
    "hardware/nvml.py",
    "interrupt.py",
    "monitoring/__init__.py",
    "monitoring/gpu.py",
    "monitoring/exporter.py",
)
EXPORTER_PACKAGES = ("prometheus_client", "pynvml", "pydantic", "pydantic_core", "typing_extensions", "annotated_types")
EXPORTER_PACKAGES_OPTIONAL = ("typing_inspection",)  # pydantic >= 2.11 imports it


def _exporter_context(dest: Path) -> None:
    """Copy the exporter's modules and the installed packages it imports (the Python running deployctl's)."""
    import importlib.util

    package = Path(deployctl.__file__).parent
    site = dest / "site"
    for rel in EXPORTER_MODULES:
        (site / "deployctl" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package / rel, site / "deployctl" / rel)
    for name in EXPORTER_PACKAGES + EXPORTER_PACKAGES_OPTIONAL:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            if name in EXPORTER_PACKAGES_OPTIONAL:
                continue
            raise EnvironmentProblem(
                f"{name} is not installed beside deployctl", "pip install deployctl's dependencies"
            )
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, site / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, site / origin.name)
    dockerfile = resources.files("deployctl").joinpath("images/exporter.Dockerfile").read_text()
    (dest / "Dockerfile").write_text(dockerfile)


def build_exporter(
    base_image: str | None = None, tag: str | None = None, progress: Progress | None = None
) -> BuiltImage:
    """Build the GPU exporter's image (`tag`, default EXPORTER_IMAGE) from deployctl's own Python packages (no
    network) and give what was built.

    The base must run the same Python minor version as deployctl (pydantic_core is compiled for it).
    """
    return _build_on_base(_exporter_context, base_image, tag or EXPORTER_IMAGE, progress)
