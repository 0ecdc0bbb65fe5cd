"""A `docker save` stream made in memory, and a bundle module pointed at it: bundles with image blobs, no Docker.

`use_fake_images(monkeypatch)` makes `bundle create --image NAME` take NAME from the fake (a config
and one random layer, in the legacy `docker save` layout) and `bundle install` hand its archive to
a recorder instead of `docker load`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@dataclass
class FakeImage:
    tag: str
    layer: bytes
    config: bytes = b""
    config_digest: str = ""
    layer_digest: str = ""

    def __post_init__(self) -> None:
        self.layer_digest = "sha256:" + hashlib.sha256(self.layer).hexdigest()
        config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [self.layer_digest]}}
        self.config = json.dumps(config, sort_keys=True).encode()
        self.config_digest = "sha256:" + hashlib.sha256(self.config).hexdigest()

    def saved(self) -> bytes:
        """The `docker save` stream (legacy layout: manifest.json, <hex>.json, <id>/layer.tar)."""
        out = io.BytesIO()
        hexid = self.config_digest.removeprefix("sha256:")
        with tarfile.open(fileobj=out, mode="w") as tar:
            manifest = [{"Config": f"{hexid}.json", "RepoTags": [self.tag], "Layers": [f"{hexid[:12]}/layer.tar"]}]
            _member(tar, "manifest.json", json.dumps(manifest).encode())
            _member(tar, f"{hexid}.json", self.config)
            _member(tar, f"{hexid[:12]}/layer.tar", self.layer)
        return out.getvalue()


@dataclass
class FakeDocker:
    images: dict[str, FakeImage] = field(default_factory=dict)
    loaded: list[bytes] = field(default_factory=list)  # every archive handed to `docker load`

    def add(self, tag: str, layer_bytes: int = 256 * 1024) -> FakeImage:
        image = FakeImage(tag, os.urandom(layer_bytes))
        self.images[tag] = image
        return image


def use_fake_images(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker()

    def inspect(name: str) -> dict[str, object]:
        image = fake.images[name]
        return {"Id": image.config_digest, "RepoTags": [name], "RootFS": {"Layers": [image.layer_digest]}}

    def save(name: str) -> Iterator[bytes]:
        data = fake.images[name].saved()
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    def load(archive: Iterator[bytes]) -> None:
        fake.loaded.append(b"".join(archive))

    monkeypatch.setattr("deployctl.bundle.images.inspect", inspect)
    monkeypatch.setattr("deployctl.bundle.images.save", save)
    monkeypatch.setattr("deployctl.bundle.images.load", load)
    return fake
