"""The one typed facade over Docker: the SDK (`engine`) and the `docker compose` CLI (`compose`).

Only this package imports `docker` or runs the `docker` CLI; the rest of deployctl gets dataclasses
and project errors (errors.py holds the one table from Docker's failures to them).
"""

from deployctl.docker.compose import OVERRIDE_FILE, ComposeError, ComposeProject, ServiceState, down_project
from deployctl.docker.engine import (
    ContainerState,
    EngineInfo,
    ImageInfo,
    RunResult,
    build_image,
    docker_binary,
    image,
    image_exists,
    image_ids,
    import_rootfs,
    info,
    labelled_containers,
    load_image,
    local_images,
    ping,
    remove_build_intermediates,
    remove_image,
    run_once,
    save_image,
    tag_image,
)
from deployctl.docker.errors import DockerFailed, ImageMissing

__all__ = [
    "OVERRIDE_FILE",
    "ComposeError",
    "ComposeProject",
    "ContainerState",
    "DockerFailed",
    "EngineInfo",
    "ImageInfo",
    "ImageMissing",
    "RunResult",
    "ServiceState",
    "build_image",
    "docker_binary",
    "down_project",
    "image",
    "image_exists",
    "image_ids",
    "import_rootfs",
    "info",
    "labelled_containers",
    "load_image",
    "local_images",
    "ping",
    "remove_build_intermediates",
    "remove_image",
    "run_once",
    "save_image",
    "tag_image",
]
