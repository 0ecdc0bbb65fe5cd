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
import re
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
def atomic_writer(
    path: Path, *, mode: int = 0o644, within: Path | None = None, fsync: bool = True
) -> Iterator[BinaryIO]:
    """Give a file to write `path` through; on a clean exit it replaces `path` whole (fsynced), else it goes.

    The temporary file `.<name>.tmp-<random>` is created beside `path` with O_EXCL | O_NOFOLLOW relative
    to the parent's descriptor, so neither a link planted at that name nor one planted at `path` is
    followed (a name already taken is skipped for another). With `within`, the parent's real path must
    lie inside it. The parent must exist. `fsync=False` is for a caller that flushes the file to disk
    itself (bundle create hands each file to a background flusher and waits for all before the manifest).
    """
    path = Path(path)
    name = path.name
    if not name or name in (".", ".."):
        raise InputError(f"{path} is not a file name")
    dir_fd = open_dir(path.parent, within=within)
    try:
        fd, tmp = _create_temporary(dir_fd, path, mode)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f  # type: ignore[misc]
                f.flush()
                os.fchmod(f.fileno(), mode)  # the umask narrowed O_CREAT's mode
                if fsync:
                    os.fsync(f.fileno())
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        if fsync:
            with contextlib.suppress(OSError):  # the rename itself survives a power cut
                os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# A name taken (by a link someone planted, or a file left by a killed run) is skipped, never opened:
# a few fresh random names later the write goes on, as mkstemp does.
_TEMPORARY_TRIES = 8


def temporary_name(name: str, attempt: int) -> str:
    """Give the temporary name an atomic write of `name` tries (`attempt` counts from 0)."""
    return f".{name}.tmp-{secrets.token_hex(4)}"


def _create_temporary(dir_fd: int, path: Path, mode: int) -> tuple[int, str]:
    """Give a new file (descriptor, name) `.<name>.tmp-<random>` created exclusively in the open directory."""
    for attempt in range(_TEMPORARY_TRIES):
        tmp = temporary_name(path.name, attempt)
        try:
            return os.open(tmp, _CREATE, mode, dir_fd=dir_fd), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from None
    raise EnvironmentProblem(f"cannot write {path}: {_TEMPORARY_TRIES} temporary names beside it are taken")


def remove_temporaries(directory: Path, *, recursive: bool = True) -> int:
    """Remove what killed atomic writes left in `directory` (and its sub-folders); give how many.

    Only names of the form `.<name>.tmp-<hex>` go (files, or links, which are removed, never
    followed); folders are walked without following links. A directory that is not there is fine.
    """
    removed = 0
    for root, dirs, files in os.walk(directory, followlinks=False):
        if not recursive:
            dirs_here, dirs[:] = list(dirs), []
        else:
            dirs_here = dirs
        for name in [*files, *(d for d in dirs_here if os.path.islink(os.path.join(root, d)))]:
            if name.startswith(".") and _TEMPORARY.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    return removed


_TEMPORARY = re.compile(r"\..+\.tmp-[0-9a-z]+")


def ensure_dir(directory: Path, *, within: Path, mode: int = 0o755) -> None:
    """Create `directory` and its missing parents below `within`, never through a link; give nothing.

    Each folder is made and opened relative to its parent's descriptor with O_NOFOLLOW, so a link
    planted at any of their names (or swapped in between two steps) is refused, not followed.
    `within` itself must exist; it may be reached through links (the operator chose it).
    """
    root = Path(within).absolute()
    rel = Path(directory).absolute().relative_to(root)  # ValueError: a caller's mistake, not the user's
    try:
        fd = os.open(root, _DIR)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot open {root}: {exc.strerror}") from None
    try:
        for part in rel.parts:
            here = root / part
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass  # a folder there is opened below; anything else there is refused
            except OSError as exc:
                raise EnvironmentProblem(f"cannot create {here}: {exc.strerror}") from None
            try:
                child = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InputError(
                        f"{here} is not a directory (a link or a file is there)", "move it aside"
                    ) from None
                raise EnvironmentProblem(f"cannot open {here}: {exc.strerror}") from None
            os.close(fd)
            fd, root = child, here
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, within: Path | None = None) -> None:
    """Write `data` as `path`, whole or not at all (see atomic_writer)."""
    try:
        with atomic_writer(path, mode=mode, within=within) as f:
            f.write(data)
    except IsADirectoryError:
        raise InputError(f"{path} is a directory", "move it aside; a file belongs there") from None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from None


def open_regular(path: Path, what: str, *, follow: bool = True) -> BinaryIO:
    """Give the regular file `path` opened for reading; InputError for anything else, without blocking.

    A FIFO, a device (/dev/zero), a socket or a directory is refused before a byte is read (the open
    itself does not wait for a FIFO's writer); with `follow=False` a link at `path` is refused too.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise InputError(f"{what} {path} is a symbolic link, not a plain file") from None
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{what} {path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """Give the bytes of the regular file `path`, at most `limit` of them; InputError otherwise.

    A FIFO, a device (/dev/zero), a directory or a file larger than `limit` is refused without
    blocking and without reading more than `limit` + 1 bytes.
    """
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise InputError(f"{what} {path} is {size:,} bytes, more than the {limit:,} allowed")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what} {path} grew past the {limit:,} bytes allowed while it was read")
    return data


def free_bytes(path: Path) -> int:
    """Give the bytes free for this user on the file system that holds `path` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
