"""Blobs (image configs and layers) on their way into a bundle and back out of it.

Into a bundle: each byte is read once, hashed (the blob's digest) and compressed with zstd on
all cores (the compressed file is hashed too: the manifest entry's sha256), in large writes,
with one fsync per file. A blob already stored, or one the base of a delta has, is not kept.

Out of a bundle: a blob is decompressed and hashed into a temporary file, and only renamed to
its digest once that digest matched; `docker load` only ever reads renamed files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from deployctl.bundle.format import CHUNK, Blob, BundleError, Entry, blob_file
from deployctl.fsio import atomic_writer, ensure_dir

Progress = Callable[[str, int, int | None], None]
SMALL = 4 * 1024 * 1024  # configs are kept in memory too (their diff_ids are checked)
ZSTD_LEVEL = 3  # zstd's default: ~1 GB/s per core here, the `zstd -T0 -3` the bench compares with


class Syncer:
    """fsync files in a background thread, once each, while the next file is being written.

    A bundle bound for a USB stick must be on the device before it is called written, but
    waiting for each file's flush in turn leaves the CPU idle while the disk works (and the disk
    idle while the CPU hashes): `later` hands a file to the flusher, `wait` joins them all.
    """

    def __init__(self) -> None:
        from concurrent.futures import Future, ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self.pending: list[Future[None]] = []

    def later(self, f: IO[bytes]) -> None:
        f.flush()
        fd = os.dup(f.fileno())

        def flush() -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.pending.append(self.pool.submit(flush))

    def wait(self) -> None:
        try:
            for done in self.pending:
                done.result()
        finally:
            self.pending.clear()
            self.pool.shutdown(wait=True)


class HashingFile:
    """A file that hashes and counts what is written to it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.h.update(data)
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        self.f.flush()


@dataclass
class BlobStore:
    """The blobs of a bundle being created, in `staging/images/sha256/`."""

    staging: Path
    skip: dict[str, int]  # blobs the base has (digest -> size): not stored
    progress: Progress
    syncer: Syncer
    blobs: dict[str, Blob]
    entries: list[Entry]
    small: dict[str, bytes]

    @classmethod
    def open(cls, staging: Path, skip: dict[str, int], progress: Progress, syncer: Syncer) -> BlobStore:
        ensure_dir(staging / "images" / "sha256", within=staging)
        return cls(staging, skip, progress, syncer, {}, [], {})

    def put(self, f: IO[bytes], size: int, label: str) -> str:
        """Store the `size` bytes of `f` (unless known) and give their digest."""
        import zstandard

        tmp = self.staging / "images" / ".incoming"
        raw = hashlib.sha256()
        kept = bytearray() if size <= SMALL else None
        done = 0
        with atomic_writer(tmp, within=self.staging, fsync=False) as out:
            hashed = HashingFile(out)
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
            with cctx.stream_writer(hashed, closefd=False, write_size=CHUNK) as z:  # type: ignore[arg-type]
                while chunk := f.read(CHUNK):
                    raw.update(chunk)
                    z.write(chunk)
                    if kept is not None:
                        kept += chunk
                    done += len(chunk)
                    self.progress(label, done, size)
            digest = "sha256:" + raw.hexdigest()
            keep = digest not in self.blobs and digest not in self.skip
            if keep:
                self.syncer.later(out)
        if kept is not None:
            self.small[digest] = bytes(kept)
        if digest not in self.blobs:
            self.blobs[digest] = Blob(digest=digest, size=done, carried=keep)
        if not keep:
            tmp.unlink()
            return digest
        rel = blob_file(digest)
        os.replace(tmp, self.staging / rel)
        self.entries.append(Entry(path=rel, size=hashed.n, sha256=hashed.h.hexdigest(), kind="image"))
        return digest

    def known(self, digest: str) -> None:
        """Record a blob the base has (or one stored already) without reading it again."""
        if digest not in self.blobs:
            self.blobs[digest] = Blob(digest=digest, size=self.skip[digest], carried=False)


# A blob is decompressed with a window of at most this much memory: zstd -3 (what create writes) uses
# 2 MiB, and a hostile frame asking for zstd's 2 GiB maximum is refused instead of allocated.
MAX_WINDOW = 32 * 1024 * 1024


def stage_blob(
    chunks: Iterable[bytes], blob: Blob, dest_dir: Path, label: str, progress: Progress, *, within: Path
) -> Path:
    """Decompress a carried blob into `dest_dir/<hex>`, renamed there only once its digest matched.

    Never more than the blob's declared size is produced: the decompressor is read in CHUNK pieces
    up to `size + 1` bytes, so a bomb (1 GiB of zeros in 33 KB) is refused after at most one chunk,
    and the bytes past the declaration never reach the disk.
    """
    import zstandard

    from deployctl.bundle.images import IterStream

    ensure_dir(dest_dir, within=within)
    dest = dest_dir / blob.digest.removeprefix("sha256:")
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    compressed = iter(chunks)
    try:
        with (
            dctx.stream_reader(IterStream(compressed), read_size=CHUNK) as z,  # type: ignore[arg-type]  # a raw stream
            atomic_writer(dest, within=within) as f,
        ):
            hashed = HashingFile(f)
            while chunk := z.read(min(CHUNK, blob.size + 1 - hashed.n)):
                if hashed.n + len(chunk) > blob.size:
                    raise BundleError(
                        f"{label} decompresses to more than the {blob.size:,} bytes the manifest declares",
                        "the bundle is damaged or hostile: get it again from its maker",
                    )
                hashed.write(chunk)
                progress(label, hashed.n, blob.size)
            _settle(hashed, blob, label)
            for _ in compressed:  # the rest of the entry is read (and its sha256 checked), never decompressed
                pass
    except zstandard.ZstdError as exc:
        raise BundleError(f"{label} does not decompress: {exc}") from None
    return dest


def stage_file(
    chunks: Iterable[bytes], dest: Path, progress: Progress, label: str, total: int, *, within: Path
) -> None:
    """Write checked chunks to `dest` under a temporary name, renamed once the last chunk (and its check) passed."""
    ensure_dir(dest.parent, within=within)
    done = 0
    with atomic_writer(dest, within=within) as f:
        for chunk in chunks:
            f.write(chunk)
            done += len(chunk)
            progress(label, done, total)


def _settle(hashed: HashingFile, blob: Blob, label: str) -> None:
    if hashed.n != blob.size or "sha256:" + hashed.h.hexdigest() != blob.digest:
        raise BundleError(f"{label}: its bytes are not blob {blob.digest[:19]}... of the manifest", "copy it again")
