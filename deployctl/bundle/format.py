"""The bundle's manifest and the rules every path in it must follow (docs/bundle.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deployctl.errors import InputError
from deployctl.safepath import check_name, check_relative

FORMAT: Literal["deployctl-bundle"] = "deployctl-bundle"
FORMAT_VERSION = 3  # 2: images as content-addressed blobs, delta bundles; 3: a signed revision (anti-rollback)
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PARTS = "parts.json"
CHUNK = 4 * 1024 * 1024
TOP_DIRS = ("images", "model", "stack", "spec", "wheels")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
# A path in a bundle: at most this many bytes (and PATH_PARTS parts), so that a target of ordinary
# length plus the longest path stays under Linux's PATH_MAX (4096) with room for temporary names.
PATH_LIMIT = 1024
PATH_PARTS = 32
# Revisions are integers: `bundle create` defaults to the creation time as YYYYMMDDHHMMSS.
REVISION_MAX = 10**18
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


class BundleError(InputError):
    """A bundle that cannot be trusted or used: nothing was loaded or written."""


class VerificationFailed(BundleError):
    """A bundle whose bytes or signature do not check out (README: exit 1, verification failed)."""

    exit_code = 1


def safe_path(path: str) -> str:
    """Give `path` if it is a plain relative path inside the bundle; raise BundleError otherwise."""
    if not path or "\x00" in path or "\\" in path:
        raise BundleError(f"unsafe path in bundle: {path[:80]!r}")
    if len(path.encode()) > PATH_LIMIT or path.count("/") >= PATH_PARTS:
        raise BundleError(
            f"path in bundle {path[:60]!r}... is {len(path.encode()):,} bytes in {path.count('/') + 1} parts "
            f"(at most {PATH_LIMIT:,} bytes and {PATH_PARTS} parts)"
        )
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
    "stack": ("stack", 2, 3),  # stack/<file>, or stack/chart/<NAME-VERSION.tgz> (bundle create --target helm)
    "spec": ("spec", 2, 2),
    "wheel": ("wheels", 2, 2),
}
# A Docker image reference (name[:tag]), as `docker tag` accepts it; never a path or an option.
_IMAGE_REF = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


def _sha256(value: str, what: str = "sha256") -> str:
    # fullmatch: `$` alone would let a trailing newline through
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{what} must be 64 lowercase hex digits")
    return value


def _bundle_path(value: str) -> str:
    try:
        return safe_path(value)
    except BundleError as exc:
        raise ValueError(exc.message) from None


def _utc_time(value: str) -> str:
    if not _TIME.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)")
    return value


# A relative path inside the bundle (safe_path's rule), a sha256 in hex and a UTC time, as manifest fields.
BundlePath = Annotated[str, AfterValidator(_bundle_path)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
UtcTime = Annotated[str, AfterValidator(_utc_time)]


# Every manifest model is strict: JSON's true is no size, "2" no revision, 1 no `carried`.
class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: BundlePath
    size: int = Field(ge=0)
    sha256: Sha256
    kind: Literal["image", "model", "stack", "spec", "wheel"]


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def blob_file(digest: str) -> str:
    """Give where a blob (an image's config or layer, by its sha256) is stored in the bundle."""
    return f"images/sha256/{digest.removeprefix('sha256:')}.zst"


def _valid(check: Any, value: Any, what: str) -> Any:
    """Run a safepath check inside a pydantic validator (its InputError becomes a ValueError)."""
    try:
        return check(value, what)
    except InputError as exc:
        raise ValueError(exc.message) from None


class Blob(BaseModel):
    """One config or layer of the bundle's images, content-addressed as in an OCI layout.

    `digest` is the sha256 of the uncompressed bytes (for a layer, its diff_id); `size` their
    length. The bundle stores it zstd-compressed at `blob_file(digest)` (an entry with its own
    sha256), or, in a delta bundle, not at all (`carried` false): the base has it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    digest: str
    size: int = Field(ge=0)
    carried: bool

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        if not _DIGEST.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a digest (sha256: and 64 lowercase hex digits)")
        return value


class ImageEntry(BaseModel):
    """An image as `docker load` gets it back: its names, its config blob and its layer blobs, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tags: list[str] = Field(min_length=1)
    config: str
    layers: list[str]

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if len(tag) > 255 or not _IMAGE_REF.fullmatch(tag):
                raise ValueError(f"{tag[:60]!r} is not an image name (registry/name:tag)")
        return value

    @property
    def blobs(self) -> list[str]:
        return [self.config, *self.layers]


class Base(BaseModel):
    """The bundle a delta builds on: its manifest's sha256 and the folder its model lives in."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    manifest_sha256: str
    name: str
    model_name: str | None

    @field_validator("manifest_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        return _sha256(value, "manifest_sha256")

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_name(value, "base.model_name")
        except InputError as exc:  # pydantic names the field already
            raise ValueError(exc.message.removeprefix("base.model_name: ")) from None


class BaseFile(BaseModel):
    """A model file a delta does not carry: the same bytes are at `base_path` in the base."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    path: BundlePath
    size: int = Field(ge=0)
    sha256: Sha256
    base_path: BundlePath


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    format: Literal["deployctl-bundle"]
    format_version: int
    revision: int = Field(ge=1, le=REVISION_MAX)
    created_at: UtcTime
    deployctl_version: str = Field(max_length=64)
    name: str = Field(max_length=128)
    plan: dict[str, Any]
    model_name: str | None
    images: list[ImageEntry]
    blobs: list[Blob] = Field(default_factory=list)
    entries: list[Entry]
    base: Base | None = None
    from_base: list[BaseFile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"format version {self.format_version} is not supported (this deployctl reads {FORMAT_VERSION})"
            )
        if self.model_name is not None:
            _valid(check_name, self.model_name, "model_name")
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
        self._check_blobs(seen)
        self._check_from_base(seen)
        return self

    def _check_blobs(self, seen: set[str]) -> None:
        blobs = {b.digest: b for b in self.blobs}
        if len(blobs) != len(self.blobs):
            raise ValueError("a blob is listed twice")
        for b in self.blobs:
            if b.carried and blob_file(b.digest) not in seen:
                raise ValueError(f"blob {b.digest} has no entry {blob_file(b.digest)}")
            if not b.carried and self.base is None:
                raise ValueError(f"blob {b.digest} is not carried, and the bundle names no base")
        carried = {blob_file(b.digest) for b in self.blobs if b.carried}
        for e in self.entries:
            if e.kind == "image" and e.path not in carried:
                raise ValueError(f"image entry {e.path!r} is no blob of the manifest")
        for image in self.images:
            for digest in image.blobs:
                if digest not in blobs:
                    raise ValueError(f"image {image.tags[0]}: blob {digest[:80]!r} is not listed in blobs")

    def _check_from_base(self, seen: set[str]) -> None:
        if self.from_base and self.base is None:
            raise ValueError("from_base lists files, and the bundle names no base")
        for f in self.from_base:
            parts = f.path.split("/")
            if parts[0] == "wheels":  # a wheel the base carries (same sha256): wheels/NAME in both
                if len(parts) != 2 or len(f.base_path.split("/")) != 2 or not f.base_path.startswith("wheels/"):
                    raise ValueError(f"from_base wheel {f.path!r} or {f.base_path!r} is not of the form wheels/NAME")
            elif self.base.model_name is None:  # type: ignore[union-attr]
                raise ValueError("from_base lists model files, and the bundle names no base with a model")
            if f.path in seen:
                raise ValueError(f"{f.path!r} is both carried and taken from the base")
            if parts[0] == "wheels":
                seen.add(f.path)
                continue
            if parts[0] != "model" or len(parts) < 3 or parts[1] != self.model_name:
                raise ValueError(f"from_base path {f.path!r} lies outside model/{self.model_name}/")
            base_parts = f.base_path.split("/")
            if base_parts[0] != "model" or len(base_parts) < 3 or base_parts[1] != self.base.model_name:  # type: ignore[union-attr]
                raise ValueError(f"from_base base_path {f.base_path!r} lies outside the base's model folder")
            if f.path in seen:
                raise ValueError(f"{f.path!r} is both carried and taken from the base")
            seen.add(f.path)

    def model_from_base(self) -> list[BaseFile]:
        """Give the model files a delta takes from its base (wheels it leaves out are not installed)."""
        return [f for f in self.from_base if f.path.startswith("model/")]

    def blob_map(self) -> dict[str, Blob]:
        return {b.digest: b for b in self.blobs}

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
    if entry.kind == "stack" and len(parts) == 3 and parts[1] != "chart":
        raise ValueError(f"stack entry {entry.path!r} is not of the form stack/NAME or stack/chart/NAME")
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
    if data.get("format_version") != FORMAT_VERSION:
        made_by = str(data.get("deployctl_version"))[:20]
        raise BundleError(
            f"manifest.json: format version {str(data.get('format_version'))[:20]} (made by deployctl {made_by}) "
            f"is not supported: this deployctl reads version {FORMAT_VERSION}",
            "make the bundle again with this deployctl",
        )
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
