"""The bundle's manifest and the rules every path in it must follow (docs/bundle.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployctl.errors import InputError
from deployctl.safepath import check_name, check_relative

FORMAT = "deployctl-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PARTS = "parts.json"
CHUNK = 4 * 1024 * 1024
TOP_DIRS = ("images", "model", "stack", "spec", "wheels")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


class BundleError(InputError):
    """A bundle that cannot be trusted or used: nothing was loaded or written."""


def safe_path(path: str) -> str:
    """Give `path` if it is a plain relative path inside the bundle; raise BundleError otherwise."""
    if not path or "\x00" in path or "\\" in path:
        raise BundleError(f"unsafe path in bundle: {path!r}")
    p = PurePosixPath(path)
    if p.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise BundleError(f"unsafe path in bundle: {path!r} (absolute, '..' or empty parts)")
    if p.parts[0] not in TOP_DIRS:
        raise BundleError(f"unexpected path in bundle: {path!r} (outside {', '.join(TOP_DIRS)})")
    try:
        check_relative(path, "path in bundle")
    except InputError as exc:
        raise BundleError(exc.message) from None
    return path


# Where each kind of entry lives, and how many path parts it has (None: any number from the minimum).
_KIND_LAYOUT: dict[str, tuple[str, int, int | None]] = {
    "image": ("images", 2, None),
    "model": ("model", 3, None),  # model/<model_name>/<file, possibly in folders>
    "stack": ("stack", 2, 2),
    "spec": ("spec", 2, 2),
    "wheel": ("wheels", 2, 2),
}
# A Docker image reference (name[:tag]), as `docker tag` accepts it; never a path or an option.
_IMAGE_REF = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size: int = Field(ge=0)
    sha256: str
    kind: Literal["image", "model", "stack", "spec", "wheel"]

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return safe_path(value)
        except BundleError as exc:
            raise ValueError(exc.message) from None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError("sha256 must be 64 lowercase hex digits")
        return value


class ImageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    tags: list[str]
    image_id: str
    uncompressed_size: int = Field(ge=0)

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        try:
            return safe_path(value)
        except BundleError as exc:
            raise ValueError(exc.message) from None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if len(tag) > 255 or not _IMAGE_REF.match(tag):
                raise ValueError(f"{tag[:60]!r} is not an image name (registry/name:tag)")
        return value


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["deployctl-bundle"]
    format_version: int
    created_at: str
    deployctl_version: str
    name: str
    plan: dict[str, Any]
    model_name: str | None
    images: list[ImageEntry]
    entries: list[Entry]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format version {self.format_version} is not supported (this deployctl reads {FORMAT_VERSION})"
            )
        if self.model_name is not None:
            try:
                check_name(self.model_name, "model_name")
            except InputError as exc:
                raise ValueError(exc.message) from None
        seen: set[str] = set()
        for e in self.entries:
            _check_kind(e, self.model_name)
            if e.path in seen:
                raise ValueError(f"duplicate path {e.path!r}")
            seen.add(e.path)
            # A file may not also be a folder of another entry ("model/a" and "model/a/b").
            for parent in PurePosixPath(e.path).parents:
                if str(parent) in seen:
                    raise ValueError(f"{e.path!r} lies under another entry")
        for e in self.entries:
            if any(str(parent) in seen for parent in PurePosixPath(e.path).parents):
                raise ValueError(f"{e.path!r} lies under another entry")
        for image in self.images:
            if image.file not in seen:
                raise ValueError(f"image file {image.file!r} has no entry")
        return self

    def entry_map(self) -> dict[str, Entry]:
        return {e.path: e for e in self.entries}

    def total_size(self, kind: str | None = None) -> int:
        return sum(e.size for e in self.entries if kind is None or e.kind == kind)


def _check_kind(entry: Entry, model_name: str | None) -> None:
    """Refuse an entry outside its kind's folder, or a model file outside model/<model_name>/."""
    top, least, most = _KIND_LAYOUT[entry.kind]
    parts = entry.path.split("/")
    if parts[0] != top or len(parts) < least or (most is not None and len(parts) > most):
        shape = f"{top}/{'NAME' if most == 2 else '...'}" if entry.kind != "model" else "model/MODEL_NAME/FILE"
        raise ValueError(f"{entry.kind} entry {entry.path!r} is not of the form {shape}")
    if entry.kind == "model" and parts[1] != model_name:
        raise ValueError(f"model entry {entry.path!r} lies outside model/{model_name}/")


def parse_manifest(raw: bytes) -> Manifest:
    """Give the manifest in `raw`, or a BundleError naming what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BundleError("manifest.json is not valid JSON (or nested too deep)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError("manifest.json is not a deployctl bundle manifest")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{loc}: " if loc else ""
        raise BundleError(f"manifest.json: {where}{err['msg'].removeprefix('Value error, ')}") from None


def dump_manifest(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def parse_size(text: str) -> int:
    """Give bytes for '4G', '700M', '1.5GiB', '4000000000' (K, M, G, T are powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise InputError(f"--split {text!r}: not a size", "e.g. 4G, 700M or 3.9GiB")
    number, unit = float(m.group(1)), m.group(2).upper()
    size = int(number * 1024 ** " KMGT".index(unit or " "))
    if size < 1024 * 1024:
        raise InputError(f"--split {text!r}: parts must be at least 1 MiB")
    return size
