"""Golden files: rendered output pinned under tests/golden (`pytest --update-golden` refreshes them)."""

from __future__ import annotations

from pathlib import Path


def assert_golden(text: str, path: Path, *, update: bool) -> None:
    """Check `text` is the golden file at `path`, after writing it there first when `update` (--update-golden)."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs: run pytest --update-golden if intended"
