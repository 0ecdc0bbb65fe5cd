"""Files written whole or not at all, files read with a bound, and the room left on a disk.

Every write deployctl makes under a directory it does not fully control (an install target, a stack
dir, /etc/systemd/system) goes through `atomic_writer`: the temporary file is created exclusively and
without following links, relative to an already-opened directory whose real path is checked, then
fsynced and renamed over the final name (a link there is replaced, never followed). A planted symlink
at the temporary name or the final name can therefore never send bytes outside that directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from deployctl.errors import EnvironmentProblem, InputError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _real_dir(fd: int) -> Path:
    """Give the real path of an open directory (what it is now, whatever links led to it)."""
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def open_dir(directory: Path, *, within: Path | None = None) -> int:
    """Give a file descriptor of `directory` (no link as its last part), checked to lie inside `within`.

    EnvironmentProblem when it cannot be opened, InputError when it resolves outside `within`.
    """
    try:
        fd = os.open(directory, _DIR | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InputError(f"{directory} is not a directory (a link or a file is there)") from None
        raise EnvironmentProblem(f"cannot open {directory}: {exc.strerror}") from None
    if within is not None:
        root = Path(os.path.realpath(within))
        real = _real_dir(fd)
        if not _inside(real, root):
            os.close(fd)
            raise InputError(f"{directory} resolves to {real}, outside {root}", "remove the link that leads there")
    return fd


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o644, within: Path | None = None) -> Iterator[BinaryIO]:
    """Give a file to write `path` through; on a clean exit it replaces `path` whole (fsynced), else it goes.

    The temporary file `.<name>.tmp-<random>` is created beside `path` with O_EXCL | O_NOFOLLOW relative
    to the parent's descriptor, so neither a link planted at that name nor one planted at `path` is
    followed. With `within`, the parent's real path must lie inside it. The parent must exist.
    """
    path = Path(path)
    name = path.name
    if not name or name in (".", ".."):
        raise InputError(f"{path} is not a file name")
    dir_fd = open_dir(path.parent, within=within)
    tmp = f".{name}.tmp-{secrets.token_hex(4)}"
    try:
        try:
            fd = os.open(tmp, _CREATE, mode, dir_fd=dir_fd)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                yield f  # type: ignore[misc]
                f.flush()
                os.fchmod(f.fileno(), mode)  # the umask narrowed O_CREAT's mode
                os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, within: Path | None = None) -> None:
    """Write `data` as `path`, whole or not at all (see atomic_writer)."""
    try:
        with atomic_writer(path, mode=mode, within=within) as f:
            f.write(data)
    except IsADirectoryError:
        raise InputError(f"{path} is a directory", "move it aside; a file belongs there") from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from None


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Give the bytes of the regular file `path`, at most `limit` of them; InputError otherwise.

    A FIFO, a device (/dev/zero), a directory or a file larger than `limit` is refused without
    blocking and without reading more than `limit` + 1 bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        if st.st_size > limit:
            raise InputError(f"{what} {path} is {st.st_size:,} bytes, more than the {limit:,} allowed")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise InputError(f"{what} {path} grew past the {limit:,} bytes allowed while it was read")
        return data
    finally:
        os.close(fd)


def free_bytes(path: Path) -> int:
    """Give the bytes free for this user on the file system that holds `path` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
