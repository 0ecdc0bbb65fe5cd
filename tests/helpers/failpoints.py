"""Drive deployctl's failpoints (deployctl/failpoints.py) from a test: pause a process at a named point,
wait until it is there, then signal or release it. The two sides meet on files, never on timing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from deployctl import failpoints

WAIT_S = 180.0  # how long a process may take to reach a point (a bound for a broken test, not a timing)


class Pauses:
    """Failpoints that pause, with their files in one folder of the test's own."""

    def __init__(self, folder: Path, *points: str, extra: str = "") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        terms = [f"{p}=pause({folder})" for p in points] + ([extra] if extra else [])
        self.env = {failpoints.ENV: ";".join(terms)}

    def wait(self, point: str, proc: subprocess.Popen[str] | None = None) -> None:
        """Return once a process has reached `point` (fails when `proc` ends first or never gets there)."""
        marker = failpoints.reached(self.folder, point)
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            if proc is not None and proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"exited {proc.returncode} before reaching {point}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached the failpoint {point}")
            time.sleep(0.02)

    def release(self, point: str) -> None:
        failpoints.release(self.folder, point)
