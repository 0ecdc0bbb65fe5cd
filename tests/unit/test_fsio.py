"""fsio: atomic writes that never follow a planted link, bounded reads that never block, free space."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from deployctl.errors import EnvironmentProblem, InputError
from deployctl.fsio import atomic_writer, free_bytes, read_bounded, write_atomic


def test_write_atomic_replaces_the_file_whole_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "spec.yaml"
    target.write_text("old")
    old = os.umask(0o077)
    try:
        write_atomic(target, b"new", mode=0o640)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["spec.yaml"]  # no temporary file left


def test_a_link_at_the_final_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "target"
    target.mkdir()
    (target / "deployctl.yaml").symlink_to(victim)
    write_atomic(target / "deployctl.yaml", b"spec")
    assert victim.read_text() == "precious"
    assert not (target / "deployctl.yaml").is_symlink()
    assert (target / "deployctl.yaml").read_bytes() == b"spec"


def test_links_planted_at_every_temporary_name_are_never_followed(tmp_path: Path, monkeypatch) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "target"
    target.mkdir()
    import deployctl.fsio as fsio

    monkeypatch.setattr(fsio.secrets, "token_hex", lambda n: "planted")
    (target / ".journal.tmp-planted").symlink_to(victim)
    with pytest.raises(EnvironmentProblem, match="cannot write"):
        write_atomic(target / "journal", b"x")
    assert victim.read_text() == "precious"


def test_a_parent_that_resolves_outside_the_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(InputError):
        write_atomic(root / "sub" / "f", b"x", within=root)
    (outside / "inner").mkdir()
    with pytest.raises(InputError, match="outside"):  # a link in the middle of the path
        write_atomic(root / "sub" / "inner" / "f", b"x", within=root)
    assert list((outside / "inner").iterdir()) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("disk pulled")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]


def test_a_directory_at_the_final_name_is_one_input_error(tmp_path: Path) -> None:
    (tmp_path / "deployctl.yaml").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        write_atomic(tmp_path / "deployctl.yaml", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["deployctl.yaml"]


def test_read_bounded_refuses_devices_fifos_and_large_files_without_blocking(tmp_path: Path) -> None:
    small = tmp_path / "key.pub"
    small.write_bytes(b"k" * 10)
    assert read_bounded(small, 10, "--pubkey") == b"k" * 10
    with pytest.raises(InputError, match="more than the 9 allowed"):
        read_bounded(small, 9, "--pubkey")
    with pytest.raises(InputError, match="not a regular file"):
        read_bounded(Path("/dev/zero"), 1024, "--pubkey")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[Exception] = []

    def read() -> None:
        try:
            read_bounded(fifo, 1024, "--pubkey")
        except InputError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(30), "read_bounded blocked on a FIFO"
    assert errors and "not a regular file" in errors[0].message
    with pytest.raises(InputError, match="does not exist"):
        read_bounded(tmp_path / "nope", 10, "--pubkey")


def test_free_bytes_looks_at_the_nearest_existing_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deployctl.fsio as fsio

    asked: list[Path] = []
    real = fsio.shutil.disk_usage

    def disk_usage(path: Path):  # type: ignore[no-untyped-def]
        asked.append(Path(path))
        return real(path)

    monkeypatch.setattr(fsio.shutil, "disk_usage", disk_usage)
    assert free_bytes(tmp_path / "not" / "yet") > 0
    assert asked == [tmp_path]


def test_what_a_killed_write_left_is_removed_and_nothing_else(tmp_path: Path) -> None:
    from deployctl.fsio import remove_temporaries

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    d = tmp_path / "staging"
    (d / "sub").mkdir(parents=True)
    (d / ".model.safetensors.tmp-1a2b3c4d").write_bytes(b"half")
    (d / "sub" / ".x.json.tmp-00ff00ff").write_bytes(b"half")
    (d / ".link.tmp-deadbeef").symlink_to(victim)  # removed, not followed
    for keep in ("model.safetensors", ".hidden", "x.tmp-1a2b", ".y.tmp-"):
        (d / keep).write_text("keep")
    assert remove_temporaries(d, recursive=False) == 2
    assert (d / "sub" / ".x.json.tmp-00ff00ff").exists()
    assert remove_temporaries(d) == 1
    assert sorted(p.name for p in d.iterdir()) == [".hidden", ".y.tmp-", "model.safetensors", "sub", "x.tmp-1a2b"]
    assert victim.read_text() == "precious" and remove_temporaries(tmp_path / "absent") == 0
