from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# A shell that starts a command in the background (`.ci/run &`, `nohup ... &`) starts it with SIGINT ignored,
# and an ignored signal stays ignored across exec: neither pytest nor the deployctl processes the tests start
# would ever see the Ctrl-C the interruption tests send. A handler of our own is reset to the default at exec,
# so every process the suite starts gets Ctrl-C as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Docker objects the suite makes carry names of its own, with a per-run suffix where they are
# removed at the end, so that a run never rebuilds, retags or removes the user's images
# (deployctl/tgi-sim:<version>, deployctl/debian-base:bookworm). Set before deployctl is imported:
# the names are read at import. The one thing the suite keeps is its cached Debian base,
# deployctl-test/debian-base:bookworm (mmdebstrap is slow; see tests/e2e/conftest.py).
RUN_ID = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
os.environ["DEPLOYCTL_SIM_IMAGE"] = f"deployctl-test/tgi-sim:run-{RUN_ID}"
os.environ["DEPLOYCTL_DEBIAN_BASE"] = "deployctl-test/debian-base:bookworm"

from helpers import tiers  # noqa: E402  (after the environment above)
from helpers.modelgen import write_model  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests are deterministic: the same examples on every run and machine (derandomize), and no
# example database (nothing is written beside the tests, nothing read from an earlier run). To explore
# beyond them, HYPOTHESIS_PROFILE=explore draws ten times as many at random and prints a failure's seed.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True, max_examples=100)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the unit tests first, then the end-to-end tests, the ones on the Kubernetes cluster last.

    In CI the set-up runs beside the tests (.ci/run): the unit tests need none of it, the Docker tests
    the engine (installed in a minute), the cluster tests the Kubernetes build (many minutes), so each
    tier starts as late as it can. The order within a tier is the collection order.
    """

    def tier(item: pytest.Item) -> int:
        if "/unit/" in str(item.path):
            return 0
        return 2 if tiers.on_cluster(item) else 1

    items.sort(key=tier)


def work_unit(nodeid: str) -> str:
    """Give the unit of work a worker takes whole when tests run side by side (`pytest -n N`, pytest-xdist).

    Every test under tests/e2e (Docker, then the cluster) is one unit, run in order by one worker: the
    suite compares the whole Docker engine before and after (tests/e2e/conftest.py), and a second
    worker's objects would count as left behind. The real-engine tier is another (its vLLM servers,
    one at a time). Any other test file is a unit of its own, in file order (module fixtures made
    once; a test that reports what the tests above it saw, sees them).
    """
    path = nodeid.split("::", 1)[0]
    folder = path.split("/")[1] if path.startswith("tests/") and path.count("/") >= 2 else ""
    return folder if folder in ("e2e", "realengine") else path


def _handed_out(unit: str) -> int:
    """The order units are handed out in: the end-to-end unit first (the longest), the real engine last."""
    return {"e2e": 0, "realengine": 2}.get(unit, 1)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which a plain `pytest` run does not load
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Hand out `work_unit`s whole, in `_handed_out` order.

    With two workers: one runs the end-to-end unit; the other the unit tests, then the real-engine
    tier, which starts when the Docker tests are over (tests/helpers/tiers.py) and runs beside the
    cluster tests, which mostly wait for pods. The CPU-heavy tiers (Docker builds, vLLM's start) are
    not run at once on a small machine. xdist's own `--dist loadgroup` cannot do this: it writes its
    group names into node IDs, which pytest 9 no longer lets a plugin change.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            ordered = sorted(self.workqueue.items(), key=lambda unit: _handed_out(unit[0]))  # stable
            self.workqueue.clear()
            self.workqueue.update(ordered)
            super()._assign_work_unit(node)

    return ByWorkUnit(config, log)


def pytest_configure(config: pytest.Config) -> None:
    tiers.start_run()


def pytest_unconfigure(config: pytest.Config) -> None:
    tiers.end_run()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="Rewrite golden files from the current output.")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def m70(models_dir: Path) -> Path:
    """Llama-3-70B's config.json with GPTQ 4-bit g128 safetensors of the real sizes (sparse)."""
    return write_model(models_dir / "Llama-3-70B-GPTQ", "llama-3-70b-instruct-gptq")


@pytest.fixture(scope="session")
def m32(models_dir: Path) -> Path:
    return write_model(models_dir / "Qwen2.5-32B-GPTQ", "qwen2.5-32b-instruct-gptq")


@pytest.fixture(scope="session")
def m8(models_dir: Path) -> Path:
    return write_model(models_dir / "Llama-3.1-8B-GPTQ", "llama-3.1-8b-instruct-gptq")


@pytest.fixture(autouse=True)
def _no_real_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches real NVML: without a fake, inventory behaves as a host with no driver."""
    from helpers.fake_nvml import no_driver

    from deployctl.hardware import inventory

    monkeypatch.setattr(inventory, "NVML_LIB", no_driver())


@pytest.fixture(scope="session")
def checkpoints(models_dir: Path) -> dict[str, Path]:
    """Every checkpoint of helpers/checkpoints.py, written once (sparse) for the session."""
    from helpers import checkpoints as published

    return {name: published.write(models_dir, name) for name in published.CHECKPOINTS}
