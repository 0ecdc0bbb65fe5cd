"""Read a bundle (a directory, a .tar, or a .tar split into parts) in one pass, trusting nothing unchecked.

`open_bundle` gives a reader whose `entries()` yields each entry with a chunk iterator; the
iterator hashes what it yields and raises BundleError at the end of an entry whose size or
sha256 disagrees with the manifest. Anything the manifest does not list, any link, device or
unsafe path, and any entry that never comes, is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deployctl.bundle.format import (
    CHUNK,
    MANIFEST,
    PARTS,
    SIGNATURE,
    BundleError,
    Entry,
    Manifest,
    VerificationFailed,
    parse_manifest,
    safe_path,
)
from deployctl.errors import InputError
from deployctl.fsio import open_regular, read_bounded
from deployctl.safepath import check_name

Chunks = Iterator[bytes]


def checked(entry: Entry, chunks: Chunks) -> Chunks:
    """Yield the chunks, then fail unless they add up to the entry's size and sha256."""
    h = hashlib.sha256()
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > entry.size:
            raise VerificationFailed(f"{entry.path} is larger than the manifest says ({entry.size} bytes)")
        h.update(chunk)
        yield chunk
    if n != entry.size:
        raise VerificationFailed(f"{entry.path} is truncated: {n} of {entry.size} bytes")
    if h.hexdigest() != entry.sha256:
        raise VerificationFailed(
            f"{entry.path} is corrupt: its sha256 does not match the manifest", "copy the bundle again"
        )


class Reader:
    manifest_raw: bytes
    signature_raw: bytes | None
    manifest: Manifest
    index: PartsIndex | None = None  # a split bundle's parts index

    def entries(self) -> Iterator[tuple[Entry, Chunks]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirReader(Reader):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_raw = _read_small(root / MANIFEST)
        sig = root / SIGNATURE
        self.signature_raw = _read_small(sig) if sig.is_symlink() or sig.exists() else None
        self.manifest = parse_manifest(self.manifest_raw)

    def _scan(self) -> None:
        """Refuse links, devices and files the manifest does not list."""
        listed = set(self.manifest.entry_map())
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(self.root).as_posix()
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode):
                    raise BundleError(f"{rel} is a symbolic link: bundles hold plain files only")
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise BundleError(f"{rel} is not a plain file (device, socket or pipe)")
                if rel not in listed and rel not in (MANIFEST, SIGNATURE):
                    raise BundleError(f"{rel} is in the bundle but not in its manifest")

    def entries(self) -> Iterator[tuple[Entry, Chunks]]:
        self._scan()
        for entry in self.manifest.entries:
            path = self.root / entry.path
            if not os.path.lexists(path):
                raise VerificationFailed(f"{entry.path} is missing from the bundle")
            yield entry, checked(entry, file_chunks(path))


def file_chunks(path: Path) -> Chunks:
    """Yield a regular file's bytes (never a link, a FIFO or a device) in CHUNK pieces."""
    try:
        f = open_regular(path, "file", follow=False)
    except InputError as exc:
        raise BundleError(exc.message) from None
    with f:
        while chunk := f.read(CHUNK):
            yield chunk


# manifest.json lists every file of a bundle: 64 MiB holds millions of entries; a parts index or a
# signature is a few KB.
MANIFEST_MAX = 64 * 1024 * 1024
SMALL_MAX = 1024 * 1024


def _read_small(path: Path, limit: int = MANIFEST_MAX) -> bytes:
    if not os.path.lexists(path):
        raise BundleError(f"{path.name} is missing: {path.parent} is not a complete bundle")
    try:
        return read_bounded(path, limit, "bundle file")
    except InputError as exc:
        raise BundleError(exc.message) from None


@dataclass(frozen=True)
class Part:
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class PartsIndex:
    """A split bundle's parts, and what its signature covers: the parts and the manifest they carry."""

    parts: list[Part]
    manifest_sha256: str | None
    signed_bytes: bytes  # the canonical bytes the signature is over
    signature: bytes | None  # manifest.sig's format, over signed_bytes


def index_bytes(parts: list[dict[str, Any]], manifest_sha256: str) -> bytes:
    """Give the canonical bytes of a parts index that its signature covers."""
    return json.dumps(
        {"manifest_sha256": manifest_sha256, "parts": parts}, sort_keys=True, separators=(",", ":")
    ).encode()


# More parts than this is no bundle (4 TiB in 4 GiB parts).
MAX_PARTS = 1024


def read_parts(index: Path) -> PartsIndex:
    """Give the parts a parts index names, each a regular file of its full size in the index's own folder."""
    try:
        data = json.loads(_read_small(index, SMALL_MAX))
        listed: list[dict[str, Any]] = [
            {"name": str(p["name"]), "size": int(p["size"]), "sha256": str(p["sha256"])} for p in data["parts"]
        ]
        manifest_sha = data.get("manifest_sha256")
        signature = data.get("signature")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise BundleError(f"{index.name} is not a valid parts index") from None
    if not listed or len(listed) > MAX_PARTS:
        raise BundleError(f"{index.name}: {len(listed)} parts (a bundle has 1 to {MAX_PARTS})")
    parts = []
    for i, p in enumerate(listed):
        name = str(p["name"])
        try:
            check_name(name, "part name")
        except InputError:
            raise BundleError(
                f"{index.name}: part {i + 1} {name[:80]!r} is not a file name in the index's own folder"
            ) from None
        path = index.parent / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise VerificationFailed(
                f"part {i + 1} of {len(listed)} is missing: {name}", "copy every part next to the index"
            ) from None
        if not stat.S_ISREG(mode):
            raise BundleError(f"part {i + 1} of {len(listed)} ({name}) is not a regular file (a link, FIFO or device)")
        actual = os.lstat(path).st_size
        if actual != p["size"]:
            raise VerificationFailed(
                f"part {i + 1} of {len(listed)} ({name}) is truncated: {actual} of {p['size']} bytes"
            )
        parts.append(Part(path, int(p["size"]), str(p["sha256"])))
    signed = index_bytes(listed, str(manifest_sha)) if isinstance(manifest_sha, str) else b""
    sig = json.dumps(signature).encode() if isinstance(signature, dict) else None
    return PartsIndex(parts, manifest_sha if isinstance(manifest_sha, str) else None, signed, sig)


class PartsStream(io.RawIOBase):
    """The parts read back to back as one stream, each part's sha256 checked when it ends."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
        self.i = -1
        self.f: io.BufferedReader | None = None
        self.h = hashlib.sha256()
        self._next()

    def _next(self) -> None:
        if self.f is not None:
            self.f.close()
            part = self.parts[self.i]
            if self.h.hexdigest() != part.sha256:
                raise VerificationFailed(
                    f"part {self.i + 1} of {len(self.parts)} ({part.path.name}) is corrupt: its sha256 does not match"
                )
        self.i += 1
        self.h = hashlib.sha256()
        self.f = None
        if self.i < len(self.parts):
            try:
                self.f = open_regular(self.parts[self.i].path, "part", follow=False)  # type: ignore[assignment]  # a BufferedReader
            except InputError as exc:
                raise BundleError(exc.message) from None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.f is not None:
            n = self.f.readinto(buffer)
            if n:
                self.h.update(memoryview(buffer)[:n])
                return n
            self._next()
        return 0

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
        super().close()


class _Tail(io.RawIOBase):
    """A stream that counts what is read through it and keeps the last TAIL bytes (to check the tar's end)."""

    TAIL = 64 * 1024

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.count = 0
        self.tail = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.stream.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.count += n
            self.tail += memoryview(buffer)[:n]
            del self.tail[: max(0, len(self.tail) - self.TAIL)]
        return n or 0

    def close(self) -> None:
        self.stream.close()
        super().close()


class TarReader(Reader):
    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.counted = _Tail(stream)
        self.stream: IO[bytes] = io.BufferedReader(self.counted, CHUNK)
        self.name = name
        self.signature_raw = None
        try:
            self.tar = tarfile.open(fileobj=self.stream, mode="r|")  # noqa: SIM115 (read entry by entry; closed in close())
            self.manifest_raw = self._expect(MANIFEST)
            first = self.tar.next()
            self.pending: tarfile.TarInfo | None = first
            if first is not None and first.name == SIGNATURE:
                self.signature_raw = self._member_bytes(first)
                self.pending = self.tar.next()
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{name} is not a readable tar: {exc}") from None
        self.manifest = parse_manifest(self.manifest_raw)

    def _member_bytes(self, member: tarfile.TarInfo) -> bytes:
        if not member.isreg() or member.size > MANIFEST_MAX:
            raise BundleError(f"{member.name} in {self.name} is not a small plain file")
        f = self.tar.extractfile(member)
        assert f is not None
        return f.read()

    def _expect(self, name: str) -> bytes:
        member = self.tar.next()
        if member is None or member.name != name:
            raise BundleError(f"{self.name} does not start with {name}: not a deployctl bundle")
        return self._member_bytes(member)

    def entries(self) -> Iterator[tuple[Entry, Chunks]]:
        wanted = self.manifest.entry_map()
        seen: set[str] = set()
        member = self.pending
        try:
            while member is not None:
                name = member.name
                if member.isdir():
                    safe_path(name.rstrip("/"))
                    member = self.tar.next()
                    continue
                if member.issym() or member.islnk():
                    raise BundleError(f"{name} is a link: bundles hold plain files only")
                if not member.isreg():
                    raise BundleError(f"{name} is not a plain file (device, fifo or other)")
                safe_path(name)
                if name in seen:
                    raise BundleError(f"{name} appears twice in {self.name}")
                if name not in wanted:
                    raise BundleError(f"{name} is in {self.name} but not in its manifest")
                entry = wanted[name]
                if member.size != entry.size:
                    raise VerificationFailed(
                        f"{name}: {member.size} bytes in the archive, {entry.size} in the manifest"
                    )
                seen.add(name)
                f = self.tar.extractfile(member)
                assert f is not None
                yield entry, checked(entry, self._chunks(f))
                member = self.tar.next()
        except (tarfile.TarError, EOFError) as exc:
            raise VerificationFailed(f"{self.name} is damaged or truncated: {exc}") from None
        missing = [p for p in wanted if p not in seen]
        if missing:
            raise VerificationFailed(f"{missing[0]} is missing from {self.name}")
        self._check_end()

    def _check_end(self) -> None:
        """Refuse anything but the tar's zero padding after its last member (read to the end: a split
        bundle's last part is checked too)."""
        end = self.tar.offset  # where the end-of-archive blocks start
        while self.stream.read(CHUNK):
            if self.counted.count - end > _Tail.TAIL:
                break
        after = self.counted.count - end
        if after > _Tail.TAIL or any(self.counted.tail[len(self.counted.tail) - after :]):
            raise VerificationFailed(
                f"{self.name} holds {after:,} bytes after the end of its archive that are not padding",
                "the bundle was changed after it was made: copy it again",
            )

    def _chunks(self, f: IO[bytes]) -> Chunks:
        try:
            while chunk := f.read(CHUNK):
                yield chunk
        except (tarfile.TarError, EOFError) as exc:
            raise VerificationFailed(f"{self.name} is damaged or truncated: {exc}") from None

    def close(self) -> None:
        self.stream.close()


def open_bundle(path: Path) -> Reader:
    """Give a reader for a bundle directory, a .tar, or a split tar (its .parts.json index or any part).

    Only folders and regular files are opened: a FIFO or a device is refused before it is read.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BundleError(f"{path} does not exist") from None
    except OSError as exc:
        raise BundleError(f"{path} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        return DirReader(path)
    if not stat.S_ISREG(mode):
        raise BundleError(f"{path} is not a bundle: not a folder or a regular file (a FIFO or a device)")
    index_path = _parts_index(path)
    if index_path is not None:
        index = read_parts(index_path)
        reader = TarReader(PartsStream(index.parts), index_path.name.removesuffix("." + PARTS))  # type: ignore[arg-type]
        reader.index = index
        return reader
    try:
        stream = open_regular(path, "bundle")
    except InputError as exc:
        raise BundleError(exc.message) from None
    return TarReader(stream, path.name)


def read_manifest(path: Path) -> tuple[bytes, Manifest]:
    """Give a bundle's manifest (raw and parsed) from the bundle (folder, .tar, parts) or its manifest.json alone."""
    if path.suffix == ".json" and not path.name.endswith(PARTS) and not path.is_dir():
        raw = _read_small(path)
        return raw, parse_manifest(raw)
    reader = open_bundle(path)
    reader.close()
    return reader.manifest_raw, reader.manifest


def _parts_index(path: Path) -> Path | None:
    if path.name.endswith(PARTS):
        return path
    if ".part" in path.name:
        base = path.name.rsplit(".part", 1)[0]
        candidate = path.with_name(f"{base}.{PARTS}")
        return candidate if os.path.lexists(candidate) else None
    return None


def drain(chunks: Chunks) -> None:
    """Read an entry to its end (checking it) without keeping it."""
    for _ in chunks:
        pass
