"""A stack dir that cannot be written (read-only, immutable): one line, nonzero exit, nothing changed,
and a running stack keeps answering. Needs root for the read-only bind mount and `chattr +i`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import Project


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for everyone, root included: a read-only bind mount over itself."""
    if os.geteuid() != 0:  # a normal user: permissions are enough
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must be able to chattr +i: {done.stderr.strip()}")
        pytest.skip(f"chattr +i is not allowed here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("lock", [read_only, immutable], ids=["read-only", "immutable"])
def test_render_and_up_into_a_locked_stack_dir(
    project: Project, lock: Callable[[Path], contextlib.AbstractContextManager[None]]
) -> None:
    if lock is read_only and os.geteuid() != 0 and shutil.which("mount") is None:
        pytest.skip("no way to make a directory read-only for this user")
    assert project.run("up", "--simulate").returncode == 0
    project.write("limits:\n  max_total_tokens: 4096\n")
    before = _snapshot(project.stack)
    with lock(project.stack):
        for args in (("render", "--simulate"), ("up", "--simulate")):
            done = project.run(*args)
            assert done.returncode == 3, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: stack_dir "), done.stderr
            assert "cannot write" in lines[0]
        assert _snapshot(project.stack) == before
        assert project.run("health").returncode == 0
    assert sorted(p.name for p in project.root.iterdir()) == ["deployctl.yaml", "stack"]
