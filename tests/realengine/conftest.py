"""The real-engine tier: vLLM's CPU build (installed by .ci/install-vllm.sh) serves tiny checkpoints made here.

Every test in this folder is marked `realengine`: `pytest -m "not realengine"` (or `--ignore
tests/realengine`) leaves them out of a quick local run. In CI (CI=true) a missing engine fails
them, never skips them; elsewhere they skip with the command that installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import ci_setup, realvllm, tiers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/realengine/" in str(item.fspath):
            item.add_marker(pytest.mark.realengine)


@pytest.fixture(scope="session", autouse=True)
def _after_the_docker_tests(request: pytest.FixtureRequest) -> None:
    """Side by side (`pytest -n 2`), this tier starts when the Docker tests are over (helpers/tiers.py)."""
    tiers.wait_for_docker_tests(request.session.items)


@pytest.fixture(scope="session")
def engine() -> None:
    """The real engine is installed (fail in CI, skip elsewhere, when it is not)."""
    ci_setup.wait_for("vllm")  # .ci/run installs it beside the tests
    problem = realvllm.missing()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the real engine for tests/realengine: {problem}", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def checkpoints(engine: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Llama checkpoints built offline: fp16, and GPTQ and AWQ copies of the same weights."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {kind: realvllm.build_model(root / f"tiny-{kind}", kind) for kind in ("fp16", "gptq", "awq")}
