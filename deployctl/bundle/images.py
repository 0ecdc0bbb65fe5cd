"""Images as blobs: taken apart from `docker save`, put back together for `docker load` and `ctr images import`.

The only module of `bundle/` that talks to Docker (inspect, list, save, load): the four
functions at the top, so that they can be re-pointed at `deployctl/docker/` in one place.
Everything below them works on streams and plain data.

A bundle stores each image as its config and its layers, each by the sha256 of its
uncompressed bytes (a layer's diff_id, the config's image ID), as OCI layouts do, so a layer
shared by two images (or by the base of a delta bundle) is stored once. The archive `install`
rebuilds holds both a Docker `manifest.json` (what `docker load` reads) and an OCI
`index.json` with `oci-layout` (what containerd's `ctr images import` reads), over the same
`blobs/sha256/<hex>` files: the layout `docker save` itself writes since Docker 25.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from deployctl.bundle.format import CHUNK, ImageEntry
from deployctl.errors import DeployctlError, InputError

# -- the conversation with Docker ------------------------------------------------------------------


def inspect(name: str) -> dict[str, Any]:
    """Give what `docker image inspect NAME` says of its id, tags and layers; an InputError when it is missing."""
    from deployctl import docker

    try:
        found = docker.image(name)
    except docker.ImageMissing:
        raise InputError(
            f"image {name} is not on this host", "build or pull it first (deployctl image build-sim)"
        ) from None
    return {"Id": found.id, "RepoTags": found.tags, "RootFS": {"Layers": found.layers}}


def save(name: str) -> Iterator[bytes]:
    """Give the `docker save NAME` stream."""
    from deployctl import docker

    return docker.save_image(name, chunk_size=CHUNK)


def chain_id(layers: list[str]) -> str:
    """Give the chain ID of a stack of layers (bottom first): how Docker's layer store names it.

    The OCI image spec's ChainID: the first layer's diff_id, then sha256("<parent chain> <diff_id>").
    """
    chain = layers[0]
    for diff_id in layers[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


@dataclass(frozen=True)
class SiteImages:
    """What the site's engine holds, from its image metadata (no image is read): ids and layer chains."""

    ids: set[str]
    chains: set[str]  # every stack of layers some local image starts with
    containerd_store: bool


def site_images() -> SiteImages:
    """Give the image ids and layer chains the site's engine holds (one listing, no `docker save`)."""
    from deployctl import docker

    found = docker.local_images()
    chains = {chain_id(layers[: i + 1]) for layers in found.values() for i in range(len(layers))}
    return SiteImages(set(found), chains, docker.info().containerd_store)


def tag(image_id: str, tags: list[str]) -> None:
    """Name an image the engine holds already (a delta's image that did not change)."""
    from deployctl import docker

    for name in tags:
        docker.tag_image(image_id, name)


def load(archive: Iterable[bytes]) -> None:
    """`docker load` an archive (as `archive_stream` gives it)."""
    from deployctl import docker

    try:
        docker.load_image(archive)
    except DeployctlError:
        raise
    except Exception as exc:
        raise DeployctlError(f"docker load failed: {exc}") from None


# -- taking a `docker save` stream apart -------------------------------------------------------------

Put = Callable[[IO[bytes], int, str], str]  # (file, size, label) -> digest "sha256:..."
_CONFIG = re.compile(r"^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")


class IterStream(io.RawIOBase):
    """An iterator of byte chunks as a readable file."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.left:
            try:
                self.left = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.left))
        buffer[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


@dataclass(frozen=True)
class Saved:
    """An image taken apart: its names, config digest and layer digests (in order)."""

    tags: list[str]
    config: str
    layers: list[str]


def split_saved(stream: Iterator[bytes], put: Put, name: str) -> Saved:
    """Read a `docker save` stream once, handing each config and layer to `put`; give what the image is made of.

    Reads both the legacy layout (`<id>/layer.tar`, `<hex>.json`) and Docker 25's
    (`blobs/sha256/<hex>`); the digests `put` gives are checked against the config's diff_ids.
    """
    digests: dict[str, str] = {}
    links: dict[str, str] = {}
    index: list[dict[str, Any]] | None = None
    with tarfile.open(fileobj=io.BufferedReader(IterStream(stream), CHUNK), mode="r|") as tar:
        for member in tar:
            path = posixpath.normpath(member.name)
            if member.issym() or member.islnk():
                links[path] = posixpath.normpath(
                    posixpath.join(posixpath.dirname(path), member.linkname) if member.issym() else member.linkname
                )
                continue
            if not member.isreg():
                continue
            f = tar.extractfile(member)
            assert f is not None
            if path == "manifest.json":
                index = json.loads(f.read())
            elif path.endswith("/layer.tar") or path.startswith("blobs/sha256/") or _CONFIG.match(path):
                digests[path] = put(f, member.size, f"{name} {path[:24]}")
    if not index:
        raise DeployctlError(f"docker save {name} gave no manifest.json")

    def digest_of(path: str) -> str:
        path = posixpath.normpath(path)
        seen = 0
        while path in links and seen < 16:
            path, seen = links[path], seen + 1
        if path not in digests:
            raise DeployctlError(f"docker save {name}: {path} is named in manifest.json but not in the archive")
        return digests[path]

    entry = index[0]
    saved = Saved(
        list(entry.get("RepoTags") or [name]), digest_of(entry["Config"]), [digest_of(p) for p in entry["Layers"]]
    )
    return saved


def check_diff_ids(saved: Saved, config: bytes, name: str) -> None:
    """Refuse an image whose layers are not the ones its config names (a bundle must reload to the same image)."""
    diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids", [])
    if diff_ids != saved.layers:
        raise DeployctlError(f"docker save {name}: the layers' sha256 differ from the config's diff_ids")


# -- putting images back together --------------------------------------------------------------------

OpenBlob = Callable[[str], IO[bytes]]
_LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar"
_CONFIG_MEDIA = "application/vnd.oci.image.config.v1+json"
_MANIFEST_MEDIA = "application/vnd.oci.image.manifest.v1+json"


def full_reference(tag: str) -> str:
    """Give the name containerd stores an image under: docker.io/library/NAME:latest for NAME."""
    name, _, version = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    return f"{name}:{version}"


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _member(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data)) + data + b"\0" * (-len(data) % 512)


def archive_stream(
    images: list[ImageEntry], sizes: dict[str, int], open_blob: OpenBlob, *, present: frozenset[str] = frozenset()
) -> Iterator[bytes]:
    """Yield one tar holding the images (each blob once) that `docker load` and `ctr images import` accept.

    `open_blob(digest)` gives the blob's verified uncompressed bytes; `sizes` their lengths. Layers in
    `present` are left out: the engine has their chain already, and Docker's loader takes a layer
    whose chain it holds from its own store without opening the file (moby
    image/tarexport/load.go, `l.lss.Get(r.ChainID())` before `loadLayer`); such an archive is for
    that engine alone, not for `ctr`.
    """
    yield from _member("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    written: set[str] = set()
    docker_manifest = []
    index = []
    for image in images:
        for digest in image.blobs:
            if digest in written or digest in present:
                continue
            written.add(digest)
            size = sizes[digest]
            yield _header(f"blobs/sha256/{digest.removeprefix('sha256:')}", size)
            with open_blob(digest) as f:
                left = size
                while left and (chunk := f.read(min(CHUNK, left))):
                    left -= len(chunk)
                    yield chunk
            if left:
                raise DeployctlError(f"blob {digest} is shorter than {size} bytes")
            yield b"\0" * (-size % 512)
        oci = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_MEDIA,
            "config": {"mediaType": _CONFIG_MEDIA, "digest": image.config, "size": sizes[image.config]},
            "layers": [{"mediaType": _LAYER_MEDIA, "digest": d, "size": sizes[d]} for d in image.layers],
        }
        raw = json.dumps(oci, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if digest not in written:
            written.add(digest)
            yield from _member(f"blobs/sha256/{digest.removeprefix('sha256:')}", raw)
        for tag in image.tags:
            annotations = {"io.containerd.image.name": full_reference(tag), "org.opencontainers.image.ref.name": tag}
            index.append({"mediaType": _MANIFEST_MEDIA, "digest": digest, "size": len(raw), "annotations": annotations})
        docker_manifest.append(
            {
                "Config": f"blobs/sha256/{image.config.removeprefix('sha256:')}",
                "RepoTags": image.tags,
                "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in image.layers],
            }
        )
    oci_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index}
    yield from _member("index.json", json.dumps(oci_index, sort_keys=True).encode())
    yield from _member("manifest.json", json.dumps(docker_manifest, sort_keys=True).encode())
    yield b"\0" * 1024
