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
    parse_manifest,
    safe_path,
)

Chunks = Iterator[bytes]


def checked(entry: Entry, chunks: Chunks) -> Chunks:
    """Yield the chunks, then fail unless they add up to the entry's size and sha256."""
    h = hashlib.sha256()
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > entry.size:
            raise BundleError(f"{entry.path} is larger than the manifest says ({entry.size} bytes)")
        h.update(chunk)
        yield chunk
    if n != entry.size:
        raise BundleError(f"{entry.path} is truncated: {n} of {entry.size} bytes")
    if h.hexdigest() != entry.sha256:
        raise BundleError(f"{entry.path} is corrupt: its sha256 does not match the manifest", "copy the bundle again")


class Reader:
    manifest_raw: bytes
    signature_raw: bytes | None
    manifest: Manifest

    def entries(self) -> Iterator[tuple[Entry, Chunks]]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DirReader(Reader):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_raw = _read_small(root / MANIFEST)
        sig = root / SIGNATURE
        self.signature_raw = _read_small(sig) if sig.exists() else None
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
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                raise BundleError(f"{entry.path} is missing from the bundle") from None
            if not stat.S_ISREG(mode):
                raise BundleError(f"{entry.path} is not a plain file")
            yield entry, checked(entry, file_chunks(path))


def file_chunks(path: Path) -> Chunks:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _read_small(path: Path, limit: int = 64 * 1024 * 1024) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise BundleError(f"{path.name} is missing: {path.parent} is not a complete bundle") from None
    if len(data) > limit:
        raise BundleError(f"{path.name} is implausibly large")
    return data


@dataclass(frozen=True)
class Part:
    path: Path
    size: int
    sha256: str


def read_parts(index: Path) -> list[Part]:
    """Give the parts a parts index names, checking each is there with its full size."""
    try:
        data = json.loads(_read_small(index))
        parts = [Part(index.parent / p["name"], int(p["size"]), str(p["sha256"])) for p in data["parts"]]
    except (ValueError, KeyError, TypeError):
        raise BundleError(f"{index.name} is not a valid parts index") from None
    for i, p in enumerate(parts):
        if "/" in p.path.name or p.path.name.startswith("."):
            raise BundleError(f"{index.name}: unsafe part name {p.path.name!r}")
        if not p.path.exists():
            raise BundleError(
                f"part {i + 1} of {len(parts)} is missing: {p.path.name}", "copy every part next to the index"
            )
        actual = p.path.stat().st_size
        if actual != p.size:
            raise BundleError(f"part {i + 1} of {len(parts)} ({p.path.name}) is truncated: {actual} of {p.size} bytes")
    return parts


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
                raise BundleError(
                    f"part {self.i + 1} of {len(self.parts)} ({part.path.name}) is corrupt: its sha256 does not match"
                )
        self.i += 1
        self.h = hashlib.sha256()
        self.f = open(self.parts[self.i].path, "rb") if self.i < len(self.parts) else None  # noqa: SIM115

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


class TarReader(Reader):
    def __init__(self, stream: IO[bytes], name: str) -> None:
        self.stream = stream
        self.name = name
        self.signature_raw = None
        try:
            self.tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 (read entry by entry; closed in close())
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
        if not member.isreg() or member.size > 64 * 1024 * 1024:
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
                    raise BundleError(f"{name}: {member.size} bytes in the archive, {entry.size} in the manifest")
                seen.add(name)
                f = self.tar.extractfile(member)
                assert f is not None
                yield entry, checked(entry, self._chunks(f))
                member = self.tar.next()
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{self.name} is damaged or truncated: {exc}") from None
        missing = [p for p in wanted if p not in seen]
        if missing:
            raise BundleError(f"{missing[0]} is missing from {self.name}")
        # Read to the end so a split bundle's last part is checked too.
        while self.stream.read(CHUNK):
            pass

    def _chunks(self, f: IO[bytes]) -> Chunks:
        try:
            while chunk := f.read(CHUNK):
                yield chunk
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{self.name} is damaged or truncated: {exc}") from None

    def close(self) -> None:
        self.stream.close()


def open_bundle(path: Path) -> Reader:
    """Give a reader for a bundle directory, a .tar, or a split tar (its .parts.json index or any part)."""
    if not path.exists():
        raise BundleError(f"{path} does not exist")
    if path.is_dir():
        return DirReader(path)
    index = _parts_index(path)
    if index is not None:
        return TarReader(io.BufferedReader(PartsStream(read_parts(index)), CHUNK), index.name.removesuffix("." + PARTS))
    return TarReader(path.open("rb"), path.name)


def read_manifest(path: Path) -> tuple[bytes, Manifest]:
    """Give a bundle's manifest (raw and parsed) from the bundle (folder, .tar, parts) or its manifest.json alone."""
    if path.is_file() and path.suffix == ".json" and not path.name.endswith(PARTS):
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
        return candidate if candidate.exists() else None
    return None


def drain(chunks: Chunks) -> None:
    """Read an entry to its end (checking it) without keeping it."""
    for _ in chunks:
        pass
