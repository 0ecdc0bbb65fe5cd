"""Tell the real-engine tier, run by one pytest-xdist worker, that another worker's Docker tests are over.

The two CPU-heavy tiers, the Docker tests (image builds, bundles, stacks) and the real engine (each vLLM
start is a minute of both cores), would slow each other down on a small machine, and the Docker tests
time some of their promises. So the real-engine tier waits for the Docker tests to end and runs beside
the cluster tests, which mostly wait for pods. The controller makes a folder for the run
(`DEPLOYCTL_TEST_TIERS`, inherited by the workers); the end-to-end worker marks the Docker tests done
in it. A plain `pytest` (one process) runs the tiers one after another and waits for nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

ENV = "DEPLOYCTL_TEST_TIERS"
DOCKER_DONE = "docker-tests-done"
LIMIT_S = 30 * 60  # past this, the real-engine tier starts anyway (a lost worker must not hang the run)


def on_cluster(item: pytest.Item) -> bool:
    """A test on the Kubernetes cluster (it uses the `cluster` fixture)."""
    return "cluster" in getattr(item, "fixturenames", ())


def is_docker_test(item: pytest.Item) -> bool:
    """An end-to-end test that is not on the cluster (tests/e2e)."""
    return item.path.parent.name == "e2e" and not on_cluster(item)


def start_run() -> None:
    """In the controller (or a plain run): make the run's folder, which the workers it starts inherit."""
    if not os.environ.get("PYTEST_XDIST_WORKER") and ENV not in os.environ:
        os.environ[ENV] = tempfile.mkdtemp(prefix="deployctl-tiers-")


def end_run() -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") and ENV in os.environ:
        shutil.rmtree(os.environ.pop(ENV), ignore_errors=True)


def docker_tests_done() -> None:
    folder = os.environ.get(ENV)
    if folder and Path(folder).is_dir():
        (Path(folder) / DOCKER_DONE).touch()


def wait_for_docker_tests(items: Iterable[pytest.Item]) -> None:
    """In an xdist worker, when this run has Docker tests (run by another worker): wait until they are over."""
    folder = os.environ.get(ENV)
    if not folder or not os.environ.get("PYTEST_XDIST_WORKER") or not any(is_docker_test(i) for i in items):
        return
    done = Path(folder) / DOCKER_DONE
    if done.exists():
        return
    print("\n[the real engine waits for the Docker tests to end]", file=sys.__stderr__, flush=True)
    began = time.monotonic()
    while not done.exists() and time.monotonic() - began < LIMIT_S:
        time.sleep(1)
    print(f"\n[the real engine starts after {time.monotonic() - began:.0f}s]", file=sys.__stderr__, flush=True)
