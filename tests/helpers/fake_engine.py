"""Just enough of the Docker SDK client for `bundle install` runs that carry no images (unit tests)."""

from __future__ import annotations

from pathlib import Path

import pytest


class FakeEngine:
    """An engine that answers `info()`, with its root dir (for install's disk-space preflight)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def info(self) -> dict[str, str]:
        return {"DockerRootDir": str(self.root)}


def use_fake_engine(monkeypatch: pytest.MonkeyPatch, root: Path) -> FakeEngine:
    engine = FakeEngine(root)
    monkeypatch.setattr("deployctl.docker.engine._client", lambda: engine)
    return engine
