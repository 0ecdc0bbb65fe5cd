"""The Docker engine through its SDK, behind typed results; every SDK error goes through errors.from_sdk."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from deployctl.docker.errors import DockerFailed, ImageMissing, cli_missing, from_sdk
from deployctl.errors import EnvironmentProblem
from deployctl.progress import Progress


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    root_dir: str
    runtimes: list[str]
    # Images kept by containerd's snapshotters (Docker 24+ opt-in), not the classic layer store: `docker
    # load` then needs every blob in the archive, even of layers the engine already has.
    containerd_store: bool = False


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]
    size: int
    config: dict[str, Any] = field(default_factory=dict)  # the image's Config (Env, Cmd, Entrypoint, ...)
    layers: list[str] = field(default_factory=list)  # RootFS.Layers: the layers' diff_ids, bottom first


@dataclass(frozen=True)
class RunState:
    """How a container runs: what a container's and a compose service's state have in common."""

    state: str  # running, restarting, exited, created, ...
    health: str | None  # healthy, unhealthy, starting, or None without a healthcheck
    exit_code: int | None
    restarts: int
    started_at: str | None
    uptime_s: float | None
    image: str


@dataclass(frozen=True)
class ContainerState(RunState):
    name: str
    service: str | None  # the compose service label, if any
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
        containerd_store=any(
            isinstance(pair, list) and pair[-1:] == ["io.containerd.snapshotter.v1"]
            for pair in raw.get("DriverStatus") or []
        ),
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
        id=found.id,
        tags=list(found.tags),
        size=int(attrs.get("Size") or 0),
        config=dict(attrs.get("Config") or {}),
        layers=list((attrs.get("RootFS") or {}).get("Layers") or []),
    )


def local_images() -> dict[str, list[str]]:
    """Give every image the engine holds (untagged ones too) by id, with its layers' diff_ids (metadata only)."""
    with _sdk("listing images"):
        return {
            img.id: list((img.attrs.get("RootFS") or {}).get("Layers") or []) for img in _client().images.list(all=True)
        }


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


# What the engine says when a FROM image is neither local nor pullable (Docker 20.10-27 wording).
_CANNOT_PULL = (
    "pull access denied",
    "failed to resolve",
    "no such host",
    "dial tcp",
    "manifest unknown",
    "not found: manifest",
    "i/o timeout",
    "TLS handshake timeout",
    "server misbehaving",
)


def build_image(context: Path, tag: str, buildargs: dict[str, str], progress: Progress | None = None) -> str:
    """Build the image in `context`, streaming the build's lines to `progress`; give its id.

    Ctrl-C (or SIGTERM) during the build does not leave the engine building on its own: the engine
    would finish the step it is in after its client left and keep that step's image, untagged and
    unnamed. The build is read to its end instead (a second signal stops at once), so that every
    step's `---> <id>` line reaches `progress` and the caller can remove what the build made; then
    the interruption goes on.
    """
    image_id = None
    interrupted: BaseException | None = None
    with _sdk(f"building {tag}"):
        stream = _client().api.build(
            path=str(context), tag=tag, buildargs=buildargs, decode=True, rm=True, forcerm=True, pull=False
        )
        chunks = _read_in_background(stream)
        while True:
            try:
                chunk = chunks.get()
                if chunk is _END:
                    break
                if isinstance(chunk, BaseException):
                    raise chunk
                if "error" in chunk and interrupted is not None:
                    break  # the build failed while we waited for it: nothing more comes
                image_id = _build_line(chunk, buildargs, progress) or image_id
            except KeyboardInterrupt as exc:
                if interrupted is not None:
                    raise  # a second one: stop at once
                interrupted = exc
                if progress:
                    progress(
                        "interrupted: letting the engine finish this build, so that none of it is left (again: stop at once)"
                    )
    if interrupted is not None:
        raise interrupted
    return image_id or image(tag).id


_END = object()  # the end of a stream read by _read_in_background


def _read_in_background(stream: Iterable[Any]) -> queue.Queue[Any]:
    """Give a queue that receives the stream's items, read by a thread of its own (then an exception or _END).

    The main thread waits on the queue, where a signal's KeyboardInterrupt leaves the stream whole.
    """
    items: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for item in stream:
                items.put(item)
        except BaseException as exc:  # handed to the main thread, which raises it
            items.put(exc)
        items.put(_END)

    threading.Thread(target=read, name="docker-build-stream", daemon=True).start()
    return items


def _build_line(chunk: dict[str, Any], buildargs: dict[str, str], progress: Progress | None) -> str | None:
    """Pass one line of the build's stream to `progress`; give the image id it announces, if any."""
    if "error" in chunk:
        detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
        if any(sign in detail for sign in _CANNOT_PULL):
            # An offline host: the engine's own text is a registry DNS or dial error; say what it means.
            base = buildargs.get("BASE_IMAGE") or "the base image"
            raise EnvironmentProblem(
                f"{base} is not on this host and cannot be pulled (no registry reachable)",
                "pass --base-image IMAGE (or --sim-base), or build one from Debian packages: deployctl image build-base",
            )
        raise DockerFailed(f"image build failed: {detail.strip().splitlines()[0]}")
    text = chunk.get("stream", "").rstrip()
    if text and progress:
        progress(text)
    aux = chunk.get("aux")
    return str(aux["ID"]) if isinstance(aux, dict) and "ID" in aux else None


def tag_image(image_id: str, tag: str) -> None:
    repo, _, version = tag.rpartition(":")
    with _sdk(f"docker tag {tag}", missing=image_id):
        _client().images.get(image_id).tag(repo, version)


def remove_image(name: str, keep_untagged: bool = False) -> None:
    """Remove a tag; without keep_untagged the image goes too (forced). Never prunes parents that the
    build may share with the user's own builds. A missing image or a failure is ignored."""
    from docker.errors import DockerException

    with contextlib.suppress(DockerException):
        _client().images.remove(name, noprune=True, force=not keep_untagged)


def image_ids() -> set[str]:
    """Give the ids of every image on the host, intermediate ones included (docker images -a)."""
    with _sdk("listing images"):
        return {i.id for i in _client().images.list(all=True)}


def remove_build_intermediates(short_ids: list[str], keep: set[str]) -> None:
    """Remove the images a build's steps made (`---> <id>` lines), newest first, unless they were there
    before (`keep`, a cache hit) or carry a tag (the result itself). Failures are ignored."""
    from docker.errors import DockerException

    for short in reversed(short_ids):
        with contextlib.suppress(DockerException):
            found = _client().images.get(short)
            if found.id in keep or found.tags:
                continue
            _client().images.remove(found.id, noprune=True)  # never a parent it did not make


def run_once(image_ref: str, entrypoint: list[str], command: list[str], timeout: int = 120) -> RunResult:
    """Run a throwaway container of an image without network; give whether it exited 0 and its output
    (the tail on success, the last line on failure). The container is removed on every path."""
    from docker.errors import DockerException

    made = None
    try:
        made = _client().containers.create(
            image_ref,
            command=command,
            entrypoint=entrypoint,
            network_disabled=True,
            labels={"ai.deployctl.run-once": "1"},
        )
        made.start()
        status = made.wait(timeout=timeout)
        out = made.logs(stdout=True, stderr=True).decode(errors="replace").strip()
        code = int(status.get("StatusCode", 1))
        if code == 0:
            return RunResult(True, out)
        lines = out.splitlines()
        return RunResult(False, lines[-1] if lines else f"exit code {code}")
    except DockerException as exc:
        # The command could not even start (no such executable in the image, a broken entrypoint).
        return RunResult(False, (str(exc).splitlines() or ["docker error"])[0])
    except Exception as exc:  # a timeout from the engine's HTTP client
        return RunResult(False, f"{type(exc).__name__}: {exc}")
    finally:
        if made is not None:
            with contextlib.suppress(DockerException):
                made.remove(force=True)


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
