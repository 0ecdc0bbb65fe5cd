"""`deployctl image`: build the simulator and base images; inspect and slim engine images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployctl.progress import Progress

if TYPE_CHECKING:
    from deployctl.images.build import BuiltImage
    from deployctl.images.layers import ImageScan
    from deployctl.images.slim import SlimResult


def build_sim(*, base_image: str | None, tag: str | None, progress: Progress) -> BuiltImage:
    """Build the simulator image (tag default: the one `up --simulate` runs); give what was built."""
    from deployctl.engines.simulator import SIM_IMAGE
    from deployctl.images import build

    return build.build_sim(base_image, tag or SIM_IMAGE, progress=progress)


def build_exporter(*, base_image: str | None, tag: str | None, progress: Progress) -> BuiltImage:
    """Build the GPU exporter's image (tag default: the one the monitoring profile and the chart run); give what
    was built."""
    from deployctl.images import build

    return build.build_exporter(base_image, tag, progress=progress)


def build_base(*, tag: str | None, suite: str, progress: Progress) -> BuiltImage:
    """Build a Debian base image from packages (tag default: deployctl/debian-base:bookworm); give what was built."""
    from deployctl.images.build import DEBIAN_BASE, build_debian_base

    return build_debian_base(tag or DEBIAN_BASE, suite, progress=progress)


def inspect(image: str) -> ImageScan:
    """Give an image's layers, the bytes later layers waste, and its folders' sizes."""
    from deployctl.images.layers import scan

    return scan(image)


def slim(source: str, *, profile: str, tag: str, dry_run: bool, progress: Progress) -> SlimResult:
    """Slim `source` by a profile and tag it `tag` once every check passes (with `dry_run`, only the plan)."""
    from deployctl.images import slim as core

    return core.slim(source, profile, tag, dry_run=dry_run, progress=progress)
