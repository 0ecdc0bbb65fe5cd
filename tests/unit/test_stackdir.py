"""The stack directory: the operator's files survive a render, revisions move only on change, good copies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deployctl import stackdir
from deployctl.errors import EnvironmentProblem, InputError

from .test_render import files_for


def _render(target: Path, gpus: int = 1) -> dict[str, bytes]:
    files = files_for(gpus)
    revision = stackdir.next_revision(stackdir.rendered_files(target), files, target)
    stackdir.write_stack(files, target, revision=revision, spec=Path("/srv/deployctl.yaml"))
    return files


def test_operator_files_and_override_survive_a_render(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target)
    (target / "compose.override.yaml").write_text("services:\n  engine:\n    environment:\n      MINE: '1'\n")
    (target / "notes").mkdir()
    (target / "notes" / "runbook.md").write_text("call Ann")
    os.symlink("notes/runbook.md", target / "runbook")
    _render(target, gpus=2)
    assert b"golden-2x4090" in (target / "compose.yaml").read_bytes()
    assert "MINE" in (target / "compose.override.yaml").read_text()
    assert (target / "runbook").read_text() == "call Ann"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]  # no temporary left beside it


def test_stack_json_records_files_owner_and_revision(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target)
    info = stackdir.StackInfo.read(target)
    assert info.revision == 1 and info.stack_dir == str(target) and info.spec == "/srv/deployctl.yaml"
    assert info.files == (".env", "compose.yaml", "plan.json", "stack.json")
    _render(target)  # the same render: same revision, nothing restarts
    assert stackdir.StackInfo.read(target).revision == 1
    _render(target, gpus=2)
    assert stackdir.StackInfo.read(target).revision == 2


def test_diff_shows_compose_and_plan_never_the_env(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    before = stackdir.stamp(files_for(1), target, revision=1, spec=None)
    after = stackdir.stamp(files_for(2), target, revision=2, spec=None)
    diff = stackdir.changes(before, after)
    assert "--- running/compose.yaml" in diff and "+++ new/plan.json" in diff
    assert "golden-test-key" not in diff and "running/.env" not in diff
    assert stackdir.changes(before, before) == ""
    assert stackdir.same_render(before, stackdir.stamp(files_for(1), target, revision=7, spec=None))


def test_remove_rendered_keeps_the_operators_files(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target)
    (target / "compose.override.yaml").write_text("services: {}\n")
    stackdir.remove_rendered(target)
    assert [p.name for p in target.iterdir()] == ["compose.override.yaml"]
    (target / "compose.override.yaml").unlink()
    _render(target)
    stackdir.remove_rendered(target)
    assert not target.exists()


def test_good_copies_newest_three_and_before(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    for gpus in (1, 2, 1, 2, 1):
        _render(target, gpus)
        stackdir.save_good(target, {"img:1": f"sha256:{gpus}"})
    kept = sorted(p.name for p in (target / ".deployctl" / "good").iterdir())
    assert kept == ["3", "4", "5"]
    newest = stackdir.read_good(target)
    assert newest is not None and newest.info.revision == 5 and newest.images == {"img:1": "sha256:1"}
    older = stackdir.read_good(target, before=5)
    assert older is not None and older.info.revision == 4 and b"golden-2x4090" in older.files["compose.yaml"]
    assert stackdir.read_good(target, before=3) is None
    # a restore writes the good copy back with its own record, the operator's files staying
    (target / "mine.txt").write_text("x")
    stackdir.write_stack(older.files, target)
    assert stackdir.StackInfo.read(target).revision == 4 and (target / "mine.txt").read_text() == "x"


def test_a_stack_dir_without_write_permission_is_one_line_and_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "stack"
    _render(target)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == target else real(p, mode))
    with pytest.raises(EnvironmentProblem, match=r"cannot write .*stack: it is read-only for this user"):
        _render(target, gpus=2)
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before


def test_a_broken_stack_json_is_named(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target)
    (target / "stack.json").write_text(json.dumps({"project": "x"}))
    with pytest.raises(InputError, match=r"stack\.json: service is missing"):
        stackdir.StackInfo.read(target)


def test_a_rolled_back_revision_number_is_not_given_again(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target)  # 1, good
    stackdir.save_good(target, {})
    _render(target, gpus=2)  # 2, fails
    stackdir.save_failed(target)
    good = stackdir.read_good(target)
    assert good is not None
    stackdir.write_stack(good.files, target)  # rolled back to 1
    _render(target, gpus=2)
    assert stackdir.StackInfo.read(target).revision == 3


def test_a_mount_point_stack_dir_is_replaced_file_by_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "stack"
    _render(target)
    (target / "compose.override.yaml").write_text("services: {}\n")
    inode = target.stat().st_ino
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == target)
    _render(target, gpus=2)
    assert target.stat().st_ino == inode  # the directory itself stayed: only its files were replaced
    assert b"golden-2x4090" in (target / "compose.yaml").read_bytes()
    assert (target / "compose.override.yaml").exists() and stackdir.StackInfo.read(target).revision == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack"]
