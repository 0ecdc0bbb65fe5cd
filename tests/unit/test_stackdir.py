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


def test_rollback_walks_back_along_what_ran_not_the_revision_numbers(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    _render(target, 1)  # revision 1 runs
    stackdir.record_good(target, {})
    _render(target, 2)  # revision 2 runs
    stackdir.record_good(target, {})
    back = stackdir.previous(target, 2)
    assert back is not None and back.info.revision == 1
    stackdir.write_stack(back.files, target)  # `rollback`: revision 1 runs again
    stackdir.went_back(target, 1)
    assert stackdir.history(target) == [1]
    _render(target, 2)  # revision 3 runs after revision 1 (2 was undone)
    assert stackdir.StackInfo.read(target).revision == 3
    stackdir.record_good(target, {})
    assert stackdir.history(target) == [1, 3]
    back = stackdir.previous(target, 3)
    assert back is not None and back.info.revision == 1  # what ran before 3, not the highest number below it
    assert stackdir.last_good(target) is not None and stackdir.last_good(target).info.revision == 3  # type: ignore[union-attr]
    stackdir.went_back(target, 1)
    assert stackdir.previous(target, 1) is None  # nothing ran before revision 1


def test_the_copies_kept_are_those_of_the_last_revisions_that_ran(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    for gpus in (1, 2, 1, 2):  # revisions 1-4 run in turn
        _render(target, gpus)
        stackdir.record_good(target, {})
    back = stackdir.read_good(target, revision=2)
    assert back is not None
    stackdir.write_stack(back.files, target)  # back to 2 by hand: history [1, 2, 3, 4] -> [1, 2]
    stackdir.went_back(target, 2)
    _render(target, 1)  # revision 5 runs after 2
    stackdir.record_good(target, {})
    kept = sorted(int(p.name) for p in (target / ".deployctl" / "good").iterdir())
    assert kept == [2, 5] and stackdir.history(target) == [1, 2, 5]  # 3 and 4 no longer on the way back


def test_a_stack_remembers_how_it_was_started(tmp_path: Path) -> None:
    target = tmp_path / "stack"
    stackdir.write_stack(files_for(1), target, revision=1, mode=("simulate", "engine=vllm"))
    assert stackdir.started_with(target) == ("simulate", "engine=vllm")
    assert stackdir.started_with(tmp_path / "nothing-here") == ()
