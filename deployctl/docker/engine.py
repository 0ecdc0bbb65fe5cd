"""The Docker engine through its SDK, behind typed results; every SDK error goes through errors.from_sdk."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from deployctl.docker.errors import DockerFailed, ImageMissing, cli_missing, from_sdk

Progress = Callable[[str], None]


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    root_dir: str
    runtimes: list[str]


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]
    size: int
    config: dict[str, Any] = field(default_factory=dict)  # the image's Config (Env, Cmd, Entrypoint, ...)


@dataclass(frozen=True)
class ContainerState:
    name: str
    service: str | None  # the compose service label, if any
    state: str  # running, restarting, exited, created, ...
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    exit_code: int | None
    restarts: int
    started_at: str | None
    uptime_s: float | None
    image: str
    image_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    ok: bool
    output: str


def docker_binary() -> str:
    """Give the docker CLI to run (`DEPLOYCTL_DOCKER` overrides)."""
    found = os.environ.get("DEPLOYCTL_DOCKER") or shutil.which("docker")
    if not found:
        raise cli_missing()
    return found


@cache
def _client() -> Any:
    try:
        import docker
    except ImportError:
        from deployctl.errors import EnvironmentProblem

        raise EnvironmentProblem("the docker Python SDK is not installed", "pip install docker") from None
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except Exception as exc:
        raise from_sdk(exc, "connecting to Docker") from None
    return c


@contextlib.contextmanager
def _sdk(what: str, missing: str | None = None) -> Iterator[None]:
    """Translate SDK errors raised inside into project errors; `missing` names the image a 404 is about."""
    from docker import errors

    try:
        yield
    except errors.ImageNotFound:
        if missing is None:
            raise DockerFailed(f"{what}: not found") from None
        raise ImageMissing(missing) from None
    except errors.DockerException as exc:
        raise from_sdk(exc, what) from None
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise from_sdk(exc, what) from None


def ping() -> None:
    """Check that the engine answers (raises EnvironmentProblem naming the socket when it does not)."""
    _client()


def info() -> EngineInfo:
    """Give the engine's version, data root and runtimes."""
    with _sdk("docker info"):
        raw = _client().info()
    return EngineInfo(
        server_version=str(raw.get("ServerVersion", "")),
        root_dir=str(raw.get("DockerRootDir") or "/var/lib/docker"),
        runtimes=sorted((raw.get("Runtimes") or {}).keys()),
    )


def image_exists(name: str) -> bool:
    """Give whether the engine holds an image of this name."""
    try:
        image(name)
    except ImageMissing:
        return False
    return True


def image(name: str) -> ImageInfo:
    """Give an image's id, tags, size and config; ImageMissing when it is not on this host."""
    with _sdk(f"inspecting image {name}", missing=name):
        found = _client().images.get(name)
    attrs = found.attrs
    return ImageInfo(
        id=found.id, tags=list(found.tags), size=int(attrs.get("Size") or 0), config=dict(attrs.get("Config") or {})
    )


def save_image(name: str, chunk_size: int) -> Iterator[bytes]:
    """Yield the `docker save` stream of an image."""
    with _sdk(f"docker save {name}", missing=name):
        yield from _client().api.get_image(name, chunk_size=chunk_size)


def load_image(chunks: Iterable[bytes]) -> None:
    """`docker load` a stream of image tar bytes (errors raised by the stream itself pass through)."""
    with _sdk("docker load"):
        for _ in _client().api.load_image(chunks):
            pass


def import_rootfs(tarball: Path, tag: str) -> ImageInfo:
    """`docker import` a root filesystem tarball as `tag`."""
    repo, _, version = tag.partition(":")
    with _sdk(f"docker import {tag}"):
        _client().api.import_image_from_file(str(tarball), repository=repo, tag=version or "latest")
    return image(tag)


def build_image(context: Path, tag: str, buildargs: dict[str, str], progress: Progress | None = None) -> str:
    """Build the image in `context`, streaming the build's lines to `progress`; give its id."""
    image_id = None
    with _sdk(f"building {tag}"):
        stream = _client().api.build(
            path=str(context), tag=tag, buildargs=buildargs, decode=True, rm=True, forcerm=True, pull=False
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                hint = None
                if "pull access denied" in detail or "not found" in detail or "failed to resolve" in detail:
                    hint = "the base image is not on this host and cannot be pulled: pass --base-image, or run `deployctl image build-base`"
                raise DockerFailed(f"image build failed: {detail.strip()}", hint)
            text = chunk.get("stream", "").rstrip()
            if text and progress:
                progress(text)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = aux["ID"]
    return image_id or image(tag).id


def tag_image(image_id: str, tag: str) -> None:
    repo, _, version = tag.rpartition(":")
    with _sdk(f"docker tag {tag}", missing=image_id):
        _client().images.get(image_id).tag(repo, version)


def remove_image(name: str, keep_untagged: bool = False) -> None:
    """Remove an image (or only this tag with keep_untagged); a missing one or a failure is ignored."""
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):
        _client().images.remove(name, noprune=keep_untagged)


def run_once(image_ref: str, entrypoint: list[str], command: list[str]) -> RunResult:
    """Run a throwaway container of an image without network; give whether it exited 0 and its output."""
    from docker.errors import ContainerError, DockerException

    try:
        out = _client().containers.run(
            image_ref,
            command=command,
            entrypoint=entrypoint,
            remove=True,
            network_disabled=True,
            stdout=True,
            stderr=True,
        )
        return RunResult(True, out.decode(errors="replace").strip())
    except ContainerError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        return RunResult(False, detail[-1] if detail else f"exit code {exc.exit_status}")
    except DockerException as exc:
        return RunResult(False, str(exc).splitlines()[0])


def container(container_id: str) -> ContainerState | None:
    """Give a container's state, or None when it is gone."""
    from docker.errors import NotFound

    try:
        with _sdk(f"inspecting container {container_id}"):
            try:
                attrs = _client().api.inspect_container(container_id)
            except NotFound:
                return None
    except DockerFailed:
        return None
    state = attrs["State"]
    started = state.get("StartedAt") if state.get("Running") else None
    uptime = (datetime.now(UTC) - docker_time(started)).total_seconds() if started else None
    labels = attrs["Config"].get("Labels") or {}
    return ContainerState(
        name=attrs["Name"].lstrip("/"),
        service=labels.get("com.docker.compose.service"),
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status"),
        exit_code=state.get("ExitCode") if not state.get("Running") else None,
        restarts=int(attrs.get("RestartCount", 0)),
        started_at=started,
        uptime_s=round(max(0.0, uptime), 1) if uptime is not None else None,
        image=attrs["Config"].get("Image", ""),
        image_id=attrs.get("Image", ""),
        labels=dict(labels),
    )


def labelled_containers(label: str) -> list[ContainerState]:
    """Give the state of every container (running or not) that carries `label` ("key" or "key=value")."""
    with _sdk("listing containers"):
        found = _client().api.containers(all=True, filters={"label": label})
    states = [container(c["Id"]) for c in found]
    return [s for s in states if s is not None]


def last_log_line(container_id: str) -> str | None:
    """Give a container's last non-empty log line, or None."""
    from docker.errors import DockerException

    try:
        raw = _client().api.logs(container_id, tail=1)
    except DockerException:
        return None
    text = raw.decode(errors="replace").strip()
    return text.splitlines()[-1] if text else None


def project_networks(project: str) -> list[str]:
    """Give the names of the networks compose made for a project."""
    with _sdk("listing networks"):
        found = _client().networks.list(filters={"label": f"com.docker.compose.project={project}"})
    return [n.name for n in found]


def docker_time(text: str) -> datetime:
    """Give a Docker timestamp (RFC 3339 with nanoseconds) as an aware datetime."""
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
