"""A rendered stack on disk: read it, write it whole or not at all, keep what deployctl did not write.

Layout of a stack directory:

    compose.yaml, .env, plan.json, stack.json   written by deployctl (stack.json records which)
    compose.override.yaml, anything else         the operator's: kept across renders, never read here
    .deployctl/good/<revision>/                  the last revisions that answered /health (for rollback)
    .deployctl/history.json                      the revisions that ran, in the order they answered
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deployctl import engines
from deployctl.errors import EnvironmentProblem, InputError
from deployctl.fsio import atomic_writer, read_bounded, write_atomic
from deployctl.http import check_url
from deployctl.interrupt import held
from deployctl.plan import Plan
from deployctl.safepath import check_dir, check_name
from deployctl.terminal import shown

SECRET_FILE = ".env"
API_KEY_NAME = "DEPLOYCTL_API_KEY"  # the key's name in .env (templates/env.j2 writes it)
STATE_DIR = ".deployctl"  # deployctl's own state inside the stack dir (never a rendered or user file)
GOOD_DIR = "good"  # .deployctl/good/<revision>/: the revisions that answered /health
FAILED_DIR = "failed"  # .deployctl/failed/<revision>/: revisions that were rolled back
KEEP_GOOD = 3  # how many good revisions a stack dir keeps (each is a few kilobytes)
IMAGES_FILE = "images.json"  # in the good copy: image reference -> image id it ran
HISTORY_FILE = "history.json"  # .deployctl/history.json: revisions in the order they ran (rollback walks it back)
HISTORY_LIMIT = 64  # entries kept; each is a number
MAX_HISTORY_BYTES = 4096
DIFF_FILES = ("compose.yaml", "plan.json")  # what `up --dry-run` compares (.env holds the secret: never shown)

# linux/fs.h: FS_IOC_GETFLAGS = _IOR('f', 1, long) and FS_IMMUTABLE_FL, the flag `chattr +i` sets.
FS_IOC_GETFLAGS = 0x80086601
FS_IMMUTABLE_FL = 0x00000010


@dataclass(frozen=True)
class StackInfo:
    """What a stack directory says about itself (stack.json): the render, and who owns it."""

    project: str
    service: str
    endpoint: str
    simulate: bool
    plan_hash: str
    load_timeout_s: int
    revision: int = 0  # 1 for the first render in this directory, +1 for each render that changed something
    stack_dir: str = ""  # the directory it was written to (a copied or moved stack is told apart)
    spec: str = ""  # the spec file it came from ("" for flags and defaults only)
    files: tuple[str, ...] = field(default=())  # the files deployctl wrote; everything else is the operator's
    # How `up` started it, as `option=value` (`simulate`, `engine=vllm`, `gpu_model=rtx4090`, ...): a bare
    # `up` keeps these where neither its flags nor the spec file say otherwise.
    mode: tuple[str, ...] = field(default=())

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> StackInfo:
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InputError(f"{where} is unreadable: {exc}") from None
        return cls(**_checked_fields(cls, raw, where))

    @classmethod
    def read(cls, stack_dir: Path) -> StackInfo:
        try:
            data = (stack_dir / "stack.json").read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"{stack_dir} is not a deployctl stack (no stack.json)",
                "run `deployctl render` or `deployctl up` first",
            ) from None
        except OSError as exc:
            raise InputError(f"{stack_dir}/stack.json is unreadable: {exc.strerror}") from None
        return cls.from_bytes(data, f"{stack_dir}/stack.json")


def _checked_fields(cls: type, data: object, where: str) -> dict[str, Any]:
    """Give stack.json's fields when each has the type StackInfo declares; an InputError otherwise."""
    kinds: dict[str, type] = {"str": str, "bool": bool, "int": int, "tuple[str, ...]": list}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise InputError(f"{where}: {f.name} is missing")
            continue
        value, kind = data[f.name], kinds[str(f.type)]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: {f.name} should be {f.type}, got {shown(json.dumps(value))}")
        if isinstance(value, list) and f.name == "mode":
            value = tuple(_mode_entry(v, f"{where}: {f.name}") for v in value)
        elif isinstance(value, list):
            value = tuple(_file_name(v, f"{where}: {f.name}") for v in value)
        out[f.name] = value
    check_name(out["project"], f"{where}: project")
    check_url(out["endpoint"], f"{where}: endpoint")
    return out


def _mode_entry(value: object, what: str) -> str:
    """One `option=value` (or `simulate`) of a stack's mode: printable, one line, bounded."""
    if not isinstance(value, str) or not value or len(value) > 4096 or not value.isprintable():
        raise InputError(f"{what}: {shown(json.dumps(value))} is not an option=value entry")
    return value


def _file_name(value: object, what: str) -> str:
    """A file deployctl wrote in a stack dir: one component (`.env` included), never a path."""
    if not isinstance(value, str) or not value or "/" in value or "\x00" in value or value in (".", ".."):
        raise InputError(f"{what}: {shown(json.dumps(value))} is not a file name in the stack directory")
    return value


@dataclass(frozen=True)
class RenderedStack:
    """What a stack directory records: where it listens, its plan, and the API key in its .env."""

    dir: Path
    info: StackInfo
    plan: Plan
    api_key: str | None


def open_stack(stack_dir: Path) -> StackInfo:
    """Give the info of the stack in `stack_dir`; InputError when none was rendered there."""
    stack_dir = check_dir(stack_dir, "stack_dir").absolute()
    if not (stack_dir / "compose.yaml").is_file():
        raise InputError(f"{stack_dir} holds no compose.yaml", "run `deployctl render` or `deployctl up` first")
    return StackInfo.read(stack_dir)


def read_stack(stack_dir: Path) -> RenderedStack | None:
    """Give what `stack_dir` records, or None when it is not a deployctl stack."""
    check_dir(stack_dir, "stack_dir")
    if not (stack_dir / "stack.json").is_file():
        return None
    info = StackInfo.read(stack_dir)
    try:
        data = json.loads((stack_dir / "plan.json").read_text())
        # A stack rendered before plans recorded their engine's facts still loads (status, down, rollback).
        plan = Plan.model_validate(engines.with_engine_facts(data) if isinstance(data, dict) else data)
    except (OSError, ValueError) as exc:
        raise InputError(f"{stack_dir}/plan.json is unreadable: {exc}") from None
    key = None
    env_file = stack_dir / SECRET_FILE
    if plan.api_key and env_file.is_file():
        # The inverse of templates/env.j2: DEPLOYCTL_API_KEY='...'
        for line in env_file.read_text().splitlines():
            if line.startswith(f"{API_KEY_NAME}="):
                key = line.split("=", 1)[1].strip().strip("'")
    return RenderedStack(stack_dir.absolute(), info, plan, key)


def started_with(stack_dir: Path) -> tuple[str, ...]:
    """Give how `up` started the stack in `stack_dir` (its mode entries); () when none is recorded."""
    try:
        if not (stack_dir / "stack.json").is_file():
            return ()
        return StackInfo.read(stack_dir).mode
    except InputError:
        return ()  # an unreadable stack.json: `up` itself says so, in its own words


def rendered_files(stack_dir: Path) -> dict[str, bytes] | None:
    """Give the files deployctl wrote in `stack_dir` as they are now, or None when it holds no stack."""
    stack_dir = stack_dir.absolute()
    if not (stack_dir / "stack.json").is_file():
        return None
    info = StackInfo.read(stack_dir)
    names = info.files or ("compose.yaml", SECRET_FILE, "plan.json", "stack.json")
    return {name: (stack_dir / name).read_bytes() for name in names if (stack_dir / name).is_file()}


def info_of(files: dict[str, bytes]) -> StackInfo:
    """Give the StackInfo that a set of rendered files carries."""
    return StackInfo.from_bytes(files["stack.json"], "stack.json")


def stamp(
    files: dict[str, bytes], stack_dir: Path, *, revision: int, spec: Path | None, mode: tuple[str, ...] = ()
) -> dict[str, bytes]:
    """Give the files with stack.json recording the revision, the directory, the spec, the file list and
    how the stack was started."""
    info = replace(
        info_of(files),
        revision=revision,
        stack_dir=str(stack_dir.absolute()),
        spec=str(spec.absolute()) if spec else "",
        files=tuple(sorted(files)),
        mode=mode,
    )
    return {**files, "stack.json": info.to_json()}


def changes(old: dict[str, bytes] | None, new: dict[str, bytes]) -> str:
    """Give the unified diff of the compose file and the plan between two renders ("" when they are alike)."""
    out: list[str] = []
    for name in DIFF_FILES:
        before = (old or {}).get(name, b"").decode().splitlines(keepends=True)
        after = new.get(name, b"").decode().splitlines(keepends=True)
        out.extend(difflib.unified_diff(before, after, f"running/{name}", f"new/{name}"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def same_render(old: dict[str, bytes] | None, new: dict[str, bytes]) -> bool:
    """Give whether two renders would run the same containers (the record in stack.json aside)."""
    if old is None:
        return False
    names = set(old) | set(new)
    return all(old.get(n) == new.get(n) for n in names - {"stack.json"}) and _plan_hash(old) == _plan_hash(new)


def next_revision(previous: dict[str, bytes] | None, files: dict[str, bytes], stack_dir: Path) -> int:
    """Give the revision a render gets: the same when nothing changed, else one more than before."""
    if previous is None:
        return 1
    was = info_of(previous).revision
    if same_render(previous, files):
        return was
    kept = [*_good_revisions(stack_dir), *_good_revisions(stack_dir, FAILED_DIR)]
    return max([was, *kept]) + 1  # a number once given (even to a revision rolled back) is not given again


def _plan_hash(files: dict[str, bytes]) -> str:
    return info_of(files).plan_hash if "stack.json" in files else ""


def _immutable(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)[:4])[0]
    except OSError:
        return False  # a file system without attributes (tmpfs on old kernels, overlay): nothing is immutable
    finally:
        os.close(fd)
    return bool(flags & FS_IMMUTABLE_FL)


def check_writable(stack_dir: Path) -> None:
    """Raise EnvironmentProblem (one line, nothing changed) when the stack dir or its parent cannot be written."""
    stack_dir = stack_dir.absolute()
    parent = stack_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the folder that mkdir or rename will change
    places = [*([stack_dir] if stack_dir.is_dir() else []), parent]
    for place in places:
        if not place.is_dir():
            raise InputError(f"stack_dir {stack_dir}: cannot write there: {place} is not a directory")
        why = None
        if _immutable(place):
            why = "it is immutable (chattr +i)", f"`chattr -i {place}` or choose another stack_dir"
        elif os.statvfs(place).f_flag & os.ST_RDONLY:
            why = "it is on a read-only file system", "remount it read-write or choose another stack_dir"
        elif not os.access(place, os.W_OK | os.X_OK):
            why = "it is read-only for this user", "fix its permissions or choose another stack_dir"
        if why:
            raise EnvironmentProblem(f"stack_dir {stack_dir}: cannot write {place}: {why[0]}", why[1])


def write_stack(
    files: dict[str, bytes],
    stack_dir: Path,
    *,
    revision: int | None = None,
    spec: Path | None = None,
    mode: tuple[str, ...] = (),
) -> Path:
    """Write the rendered files as `stack_dir`, whole or not at all, keeping every file deployctl did not write.

    With `revision`, stack.json is stamped (revision, directory, spec, file list, mode); without it, the
    files already carry their record (a good copy being restored).
    """
    stack_dir = check_dir(stack_dir, "stack_dir").absolute()
    if stack_dir.exists() and not stack_dir.is_dir():
        raise InputError(f"stack_dir {stack_dir} exists and is not a directory")
    check_writable(stack_dir)
    previous = rendered_files(stack_dir)
    if stack_dir.is_dir() and any(stack_dir.iterdir()) and previous is None:
        raise InputError(f"stack_dir {stack_dir} holds other files", "choose an empty or new directory")
    if revision is not None:
        files = stamp(files, stack_dir, revision=revision, spec=spec, mode=mode)
    written = set(info_of(previous).files or previous) if previous else set()
    keep = [p.name for p in stack_dir.iterdir() if p.name not in written and p.name not in files] if previous else []

    def swap(tmp: Path) -> None:
        if os.path.ismount(stack_dir):  # a mount point cannot be renamed: replace file by file
            _replace_files(tmp, stack_dir, written - set(files))
        else:
            _swap_in(tmp, stack_dir, keep)

    _write_staged(files, stack_dir, "stack_dir", swap)
    return stack_dir


def write_tree(files: dict[str, bytes], out_dir: Path, marker: str, what: str) -> Path:
    """Write `files` (names may hold `/`) as `out_dir`, whole or not at all: a Helm chart, say. A non-empty
    directory is replaced only when it holds `marker`, the file that says deployctl wrote it."""
    out_dir = check_dir(out_dir, what).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{what} {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / marker).exists():
        raise InputError(f"{what} {out_dir} holds other files", "choose an empty or new directory")
    _write_staged(files, out_dir, what, lambda tmp: _swap_in(tmp, out_dir, []))
    return out_dir


def _write_staged(files: dict[str, bytes], target: Path, what: str, swap: Callable[[Path], None]) -> None:
    """Write `files` into a fresh folder beside `target` (fsynced; .env mode 0600), then `swap` it in with
    Ctrl-C and SIGTERM held; on any failure the staged folder (and a parent made for it) goes."""
    parent = target.parent
    created_parent = not parent.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=parent))
    except OSError as exc:
        raise InputError(
            f"{what} {target}: cannot write there: {exc.strerror}", "choose a writable directory"
        ) from None
    try:
        for name, data in files.items():
            _write_file(tmp / name, data, 0o600 if name == SECRET_FILE else 0o644)
        os.chmod(tmp, 0o755)
        with held():
            swap(tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent:
            shutil.rmtree(parent, ignore_errors=True)
        raise EnvironmentProblem(f"{what} {target}: cannot write there: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent:
            shutil.rmtree(parent, ignore_errors=True)
        raise


def _write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a chart's templates/; names are deployctl's own
    with atomic_writer(path, mode=mode) as f:
        f.write(data)


def _replace_files(new: Path, target: Path, stale: set[str]) -> None:
    """Move each file of `new` over its namesake in `target` (stack.json last), then drop `stale` ones."""
    names = sorted(p.name for p in new.iterdir())
    for name in [n for n in names if n != "stack.json"] + ["stack.json"]:
        os.replace(new / name, target / name)
    for name in stale:
        (target / name).unlink(missing_ok=True)
    new.rmdir()


def _swap_in(new: Path, target: Path, keep: list[str]) -> None:
    """Put `new` in place of `target`, carrying over the `keep` entries; the old stack is removed last."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    moved: list[str] = []
    try:
        os.rename(new, target)
        for name in keep:
            os.rename(old / name, target / name)
            moved.append(name)
    except BaseException:
        for name in moved:
            os.rename(target / name, old / name)
        if target.exists():
            os.rename(target, new)
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_rendered(stack_dir: Path) -> None:
    """Remove the files deployctl wrote (the operator's stay); the directory too when nothing else is left."""
    stack_dir = stack_dir.absolute()
    files = rendered_files(stack_dir)
    if files is None:
        return
    with held():
        for name in files:
            if name != "stack.json":
                (stack_dir / name).unlink(missing_ok=True)
        (stack_dir / "stack.json").unlink(missing_ok=True)  # last: until it goes, the directory is a stack
        shutil.rmtree(stack_dir / STATE_DIR, ignore_errors=True)
        with contextlib.suppress(OSError):
            stack_dir.rmdir()


def save_good(stack_dir: Path, images: dict[str, str], kind: str = GOOD_DIR) -> None:
    """Keep the stack's rendered files (and the image ids they ran) as a good (or failed) copy of its revision."""
    stack_dir = stack_dir.absolute()
    files = rendered_files(stack_dir)
    if files is None:
        return
    good = stack_dir / STATE_DIR / kind
    good.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = good / str(info_of(files).revision)
    tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=good))
    try:
        for name, data in files.items():
            _write_file(tmp / name, data, 0o600 if name == SECRET_FILE else 0o644)
        _write_file(tmp / IMAGES_FILE, (json.dumps(images, indent=2, sort_keys=True) + "\n").encode(), 0o644)
        with held():
            if final.exists():
                aside = good / f".old-{os.getpid()}"
                os.rename(final, aside)
                os.rename(tmp, final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ran = history(stack_dir) if kind == GOOD_DIR else []
    if ran:  # the copies rollback may walk back to: the last few revisions that ran
        keep = {info_of(files).revision, *_recent(ran)}
        old = [r for r in _good_revisions(stack_dir) if r not in keep]
    else:
        old = _good_revisions(stack_dir, kind)[:-KEEP_GOOD]
    for revision in old:
        shutil.rmtree(good / str(revision), ignore_errors=True)


def record_good(stack_dir: Path, images: dict[str, str]) -> None:
    """Keep the running revision as a good copy and add it to the history of what ran (it answered)."""
    stack_dir = stack_dir.absolute()
    files = rendered_files(stack_dir)
    if files is None:
        return
    revision = info_of(files).revision
    ran = history(stack_dir)
    if ran[-1:] != [revision]:
        _write_history(stack_dir, [*ran, revision][-HISTORY_LIMIT:])
    save_good(stack_dir, images)


def history(stack_dir: Path) -> list[int]:
    """Give the revisions that ran in `stack_dir`, oldest first ([] when none is recorded)."""
    path = stack_dir.absolute() / STATE_DIR / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        raw = json.loads(read_bounded(path, MAX_HISTORY_BYTES, "stack history"))
    except (InputError, ValueError):
        return []  # unreadable: rollback falls back to the newest good copy older than the running one
    if not isinstance(raw, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in raw):
        return []
    return raw


def _write_history(stack_dir: Path, revisions: list[int]) -> None:
    state = stack_dir / STATE_DIR
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(state / HISTORY_FILE, (json.dumps(revisions) + "\n").encode())


def _recent(revisions: list[int]) -> list[int]:
    """Give the last KEEP_GOOD distinct revisions of a history, newest first."""
    out: list[int] = []
    for r in reversed(revisions):
        if r not in out:
            out.append(r)
    return out[:KEEP_GOOD]


def went_back(stack_dir: Path, revision: int) -> None:
    """Record that `rollback` went back to `revision`: the history ends there (what ran after it is undone)."""
    ran = history(stack_dir)
    if revision in ran:
        cut = len(ran) - 1 - ran[::-1].index(revision)
        _write_history(stack_dir.absolute(), ran[: cut + 1])


def previous(stack_dir: Path, current: int) -> GoodCopy | None:
    """Give the revision that ran before `current` (back along the history), or None when none is kept.

    Without a history (a stack directory from before it was recorded), the newest good copy older than
    `current`.
    """
    ran = history(stack_dir)
    if not ran:
        return read_good(stack_dir, before=current)
    if ran[-1] == current:
        ran = ran[:-1]
    for revision in reversed(ran):
        if revision != current:
            found = read_good(stack_dir, revision=revision)
            if found is not None:
                return found
    return None


def last_good(stack_dir: Path) -> GoodCopy | None:
    """Give the revision that answered last (the end of the history), or the newest good copy."""
    for revision in reversed(history(stack_dir)):
        found = read_good(stack_dir, revision=revision)
        if found is not None:
            return found
    return read_good(stack_dir)


def save_failed(stack_dir: Path) -> None:
    """Keep the stack's rendered files as a failed revision (for reading later; its number is not reused)."""
    save_good(stack_dir, {}, kind=FAILED_DIR)


def _good_revisions(stack_dir: Path, kind: str = GOOD_DIR) -> list[int]:
    good = stack_dir / STATE_DIR / kind
    if not good.is_dir():
        return []
    return sorted(int(p.name) for p in good.iterdir() if p.name.isdigit() and (p / "stack.json").is_file())


@dataclass(frozen=True)
class GoodCopy:
    """A revision that answered /health: its rendered files and the image id each image reference ran."""

    files: dict[str, bytes]
    images: dict[str, str]

    @property
    def info(self) -> StackInfo:
        return info_of(self.files)


def read_good(stack_dir: Path, before: int | None = None, revision: int | None = None) -> GoodCopy | None:
    """Give the newest good copy kept in the stack dir (older than revision `before`, or exactly `revision`,
    when given), or None."""
    stack_dir = stack_dir.absolute()
    found = [
        r for r in _good_revisions(stack_dir) if (before is None or r < before) and (revision is None or r == revision)
    ]
    if not found:
        return None
    where = stack_dir / STATE_DIR / GOOD_DIR / str(found[-1])
    files = {p.name: p.read_bytes() for p in where.iterdir() if p.is_file() and p.name != IMAGES_FILE}
    try:
        images = json.loads((where / IMAGES_FILE).read_text())
    except (OSError, ValueError):
        images = {}
    return GoodCopy(files, images)
