"""Wait for a CI installer that .ci/run started beside the tests (docker, kubetools, k8s, ...).

.ci/run exports DEPLOYCTL_CI_SETUP, a folder where each installer `name` writes `name.log` as it runs
and `name.rc` ("<exit status> <seconds>") when it ends. A test tier calls wait_for(name) before it
uses what that installer provides. Outside .ci/run (no DEPLOYCTL_CI_SETUP, or no such installer in
this run) nothing is waited for.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ENV = "DEPLOYCTL_CI_SETUP"
LIMIT_S = 45 * 60  # a hung installer fails the tests that need it, rather than CI hanging for ever
_finished: set[str] = set()


def wait_for(name: str) -> None:
    """Return once the installer `name` has finished; fail the test, naming its log, when it failed."""
    folder = os.environ.get(ENV)
    if not folder or name in _finished:
        return
    log, done = Path(folder) / f"{name}.log", Path(folder) / f"{name}.rc"
    if not log.exists() and not done.exists():
        return  # not an installer of this run
    began = time.monotonic()
    if not done.exists():
        print(f"\n[waiting for the set-up `{name}` ({log})]", file=sys.__stderr__, flush=True)
    while not done.exists():
        if time.monotonic() - began > LIMIT_S:
            pytest.fail(f"the CI set-up `{name}` did not finish in {LIMIT_S // 60} minutes; see {log}", pytrace=False)
        time.sleep(1)
    status, seconds = done.read_text().split()
    if status != "0":
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        pytest.fail(
            f"the CI set-up `{name}` failed (exit {status} after {seconds}s); {log} ends:\n{tail}", pytrace=False
        )
    waited = time.monotonic() - began
    if waited >= 1:
        print(f"\n[set-up `{name}` ready after {waited:.0f}s of waiting]", file=sys.__stderr__, flush=True)
    _finished.add(name)
