#!/usr/bin/env python3
"""Time from `deployctl up --simulate` to healthy, against `docker compose up -d --wait` on the
same rendered stack (the baseline), measured in the same run. Needs a Docker engine.

deployctl's overhead (plan, render, `compose config`, the port check, polling /health) should
stay under one second. Note the baseline waits for Docker's own healthcheck (5 s interval), while
deployctl polls /health directly, so the ratio can be below 1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    deployctl = [sys.executable, "-m", "deployctl"]
    ours, base = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "deployctl.yaml").write_text(f"name: bench-up\nserve:\n  port: {free_port()}\nstack_dir: stack\n")
        subprocess.run([*deployctl, "image", "build-sim"], cwd=root, check=True, capture_output=True)
        compose = ["docker", "compose", "--project-directory", str(root / "stack")]
        for _ in range(ROUNDS):
            ours.append(run([*deployctl, "up", "--simulate"], root))
            subprocess.run([*compose, "down", "-t", "1"], check=True, capture_output=True)
            base.append(run([*compose, "up", "-d", "--wait"], root))
            subprocess.run([*compose, "down", "-t", "1"], check=True, capture_output=True)
    o, b = min(ours), min(base)
    print(f"deployctl up --simulate to healthy: {o:6.2f} s (best of {ROUNDS}: {', '.join(f'{x:.2f}' for x in ours)})")
    print(f"docker compose up -d --wait:       {b:6.2f} s (best of {ROUNDS}: {', '.join(f'{x:.2f}' for x in base)})")
    print(f"ratio deployctl / compose: {o / b:.2f}   overhead: {o - b:+.2f} s (target < +1.00 s)")
    return 0 if o - b < 1.0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
