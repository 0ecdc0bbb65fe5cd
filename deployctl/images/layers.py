"""Read an image's layers from the `docker save` stream, without extracting anything to disk.

Each layer's tar is read as it streams past: its files and sizes, its whiteouts (deletions) and
opaque folders. From those come the bytes each layer carries that a later layer overwrites or
deletes (wasted), and the final filesystem (what a container sees), for the largest folders and
for slimming plans.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from deployctl.errors import DeployctlError, InputError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class LayerFiles:
    """What one layer tar holds: files with their sizes, and what it deletes."""

    files: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    opaque: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        return sum(self.files.values())


@dataclass(frozen=True)
class Layer:
    index: int
    digest: str
    size: int
    files: int
    created_by: str
    wasted: int  # bytes of this layer that later layers overwrite or delete


@dataclass
class ImageScan:
    image: str
    image_id: str
    size: int
    layers: list[Layer]
    wasted: int
    final: dict[str, int]  # path -> size, what a container sees

    def largest_dirs(self, depth: int = 3, top: int = 15) -> list[tuple[str, int]]:
        """Give the folders (cut at `depth` parts) holding the most bytes of the final filesystem."""
        sizes: dict[str, int] = defaultdict(int)
        for path, size in self.final.items():
            parts = path.strip("/").split("/")
            for d in range(1, min(depth, len(parts) - 1) + 1):
                sizes["/" + "/".join(parts[:d])] += size
        deepest = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
        return deepest[:top]

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "image_id": self.image_id,
            "size": self.size,
            "wasted": self.wasted,
            "layers": [layer.__dict__ for layer in self.layers],
            "largest_dirs": [{"path": p, "bytes": n} for p, n in self.largest_dirs()],
        }


def read_layer(stream: IO[bytes]) -> LayerFiles:
    """Give the files and deletions of one layer tar, read as a stream."""
    out = LayerFiles()
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            name = m.name[2:] if m.name.startswith("./") else m.name
            path = "/" + posixpath.normpath(name).lstrip("/")
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == OPAQUE:
                out.opaque.add(parent)
            elif base.startswith(WHITEOUT):
                out.deleted.add(posixpath.join(parent, base[len(WHITEOUT) :]))
            elif m.isreg():
                out.files[path] = m.size
            elif m.issym():
                out.files[path] = len(m.linkname)  # Docker counts a link's own size
    return out


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def apply_layers(layers: list[LayerFiles]) -> tuple[dict[str, int], list[int]]:
    """Give the final filesystem and, per layer, the bytes later layers overwrite or delete."""
    final: dict[str, tuple[int, int]] = {}  # path -> (size, layer index)
    wasted = [0] * len(layers)

    def drop(path: str) -> None:
        size, owner = final.pop(path)
        wasted[owner] += size

    for i, layer in enumerate(layers):
        for folder in layer.opaque:
            for p in [p for p in final if _under(p, folder)]:
                drop(p)
        for gone in layer.deleted:
            if gone in final:
                drop(gone)
            for p in [p for p in final if _under(p, gone)]:
                drop(p)
        for path, size in layer.files.items():
            if path in final:
                drop(path)
            final[path] = (size, i)
    return {p: s for p, (s, _) in final.items()}, wasted


def _save_members(tar: tarfile.TarFile) -> Iterator[tuple[str, IO[bytes] | None, bytes | None]]:
    for m in tar:
        if not m.isreg():
            continue
        f = tar.extractfile(m)
        if m.name.endswith(".json") or m.name in ("repositories", "index.json", "oci-layout"):
            yield m.name, None, f.read() if f else b""
        else:
            yield m.name, f, None


def scan(image_name: str) -> ImageScan:
    """Give the layers, wasted bytes and final filesystem of an image on this host."""
    from docker.errors import ImageNotFound

    from deployctl.docker_engine import client

    try:
        image = client().images.get(image_name)
    except ImageNotFound:
        raise InputError(f"image {image_name} is not on this host", "docker images lists those that are") from None
    contents: dict[str, LayerFiles] = {}
    small: dict[str, bytes] = {}
    stream = _IterStream(client().api.get_image(image.id, chunk_size=4 * 1024 * 1024))
    with tarfile.open(fileobj=stream, mode="r|") as outer:  # type: ignore[call-overload]  # a read()-able stream
        for name, f, data in _save_members(outer):
            if data is not None:
                small[name] = data
                continue
            assert f is not None
            try:
                contents[name] = read_layer(f)
            except tarfile.TarError:
                continue  # a config blob or another non-layer file in an OCI layout
    manifest = json.loads(small.get("manifest.json", b"[]"))
    if not manifest:
        raise DeployctlError(f"docker save of {image_name} gave no manifest.json")
    order = manifest[0]["Layers"]
    layers = [contents.get(name, LayerFiles()) for name in order]
    final, wasted = apply_layers(layers)
    config = json.loads(small.get(manifest[0]["Config"], b"{}"))
    # The config's history marks the steps that made no layer (ENV, CMD, ...); the rest are the layers, in order.
    steps = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
    steps += [""] * (len(layers) - len(steps))
    out = [
        Layer(i, _digest(order[i]), layer.size, len(layer.files), _short(steps[i]), wasted[i])
        for i, layer in enumerate(layers)
    ]
    return ImageScan(image_name, image.id, int(image.attrs.get("Size", 0)), out, sum(wasted), final)


def _digest(member: str) -> str:
    """Give a short id for a layer from its name in the save stream (<id>/layer.tar or blobs/sha256/<id>)."""
    parts = member.split("/")
    return (parts[-1] if parts[0] == "blobs" else parts[0])[:12]


def _short(created_by: str) -> str:
    if not created_by:
        return "(imported or unrecorded)"
    return created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()[:160]


class _IterStream:
    """A read()-able file over an iterator of byte chunks (the docker save HTTP stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out
