"""The one path-safety rule for everything that becomes a path on this host.

A *name* (a model name in a bundle manifest, a served model name, a stack name, an image
archive's file name) is a single path component from a documented character set:
ASCII letters and digits, then letters, digits, ``.``, ``_`` and ``-``; at most 128
characters; never ``.`` or ``..``. A *relative path* is made of such components joined by
``/``. A path that is joined to a root must stay under that root after every symlink has
been resolved, and that check runs before a byte is written.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path, PurePosixPath

from deployctl import terminal
from deployctl.errors import InputError

NAME_MAX = 128
NAME_CHARS = "ASCII letters, digits, '.', '_' and '-' (starting with a letter or digit)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(value: object, what: str) -> str:
    """Give `value` if it is one safe path component; raise InputError naming `what` otherwise."""
    if not isinstance(value, str):
        raise InputError(f"{what}: expected a name, got {type(value).__name__}")
    shown = value if len(value) <= 60 else value[:57] + "..."
    if len(value) > NAME_MAX:
        raise InputError(f"{what}: {shown!r} is {len(value)} characters long (at most {NAME_MAX})")
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise InputError(f"{what}: {shown!r} is not a safe name (allowed: {NAME_CHARS})")
    return value


def check_relative(value: object, what: str) -> PurePosixPath:
    """Give `value` as a relative POSIX path whose every part passes `check_name`."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{what}: expected a relative path, got {value!r}")
    if value.startswith("/") or "\\" in value or "\x00" in value:
        raise InputError(f"{what}: {value[:60]!r} is not a relative path inside its folder")
    parts = value.split("/")
    for part in parts:
        check_name(part, what)
    return PurePosixPath(*parts)


def within(root: Path, relative: str | PurePosixPath, what: str) -> Path:
    """Join a checked relative path to `root`; the result, symlinks resolved, must stay under root.

    Parents that do not exist yet are fine (they resolve to themselves); a symlinked parent
    that points outside `root` is refused, as is `..` anywhere.
    """
    rel = check_relative(str(relative), what)
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise InputError(f"{what}: {str(rel)!r} leads outside {root} (through a symlink)")
    return target


def is_under(root: Path, path: Path) -> bool:
    """Whether `path`, symlinks resolved, is `root` or inside it."""
    base, target = root.resolve(), Path(os.path.realpath(path))
    return target == base or base in target.parents


# Linux limits (limits.h): a whole path at most PATH_MAX bytes, one component at most NAME_MAX.
PATH_MAX = 4096
COMPONENT_MAX = 255


def check_dir(path: Path, what: str) -> Path:
    """Give `path` if it can be a folder of ours: within length limits, no symlink loop, no file in the way.

    A path that does not exist yet passes (it will be created); one that exists must be a folder.
    """
    text = os.fspath(path)
    shown = terminal.shown(text)
    if "\x00" in text:
        raise InputError(f"{what}: {shown} holds a NUL byte")
    if len(text.encode()) > PATH_MAX or any(len(part.encode()) > COMPONENT_MAX for part in path.parts):
        raise InputError(f"{what}: {shown} is too long (at most {COMPONENT_MAX} bytes a folder name)")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what}: {shown} is a symlink loop", "point it at a real folder") from None
        if exc.errno == errno.ENOTDIR:
            raise InputError(f"{what}: {shown}: a part of the path is a file, not a folder") from None
        raise InputError(f"{what}: {shown}: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise InputError(f"{what}: {shown} exists and is not a folder")
    return path
