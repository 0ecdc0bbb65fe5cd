#!/usr/bin/env python3
"""How fast `deployctl --help` and `deployctl plan` answer, as a ratio against `python -c pass`.

The target: both under 0.3 s on this machine. Heavy modules (docker, jinja2, aiohttp, rich,
matplotlib) must load lazily for that. Prints medians of N runs each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def deployctl(*args: str) -> list[str]:
    """Give the command line that runs deployctl with `args` in this Python."""
    return [sys.executable, "-m", "deployctl", *args]


CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "deployctl --help": deployctl("--help"),
    "deployctl plan (70B, 2 x rtx4090)": deployctl(
        "plan", "--gpu-model", "rtx4090", "--gpus", "2", "--preset", "llama-3-70b-instruct-gptq"
    ),
    "deployctl plan --json": deployctl(
        "plan", "--gpu-model", "rtx4090", "--preset", "qwen2.5-32b-instruct-gptq", "--json"
    ),
    "deployctl plan --compare (3 hosts, vllm)": deployctl(
        "plan",
        "--preset",
        "deepseek-r1-distill-llama-70b-awq",  # vLLM 0.30+ does not load the act-order GPTQ preset
        "--engine",
        "vllm",
        "--compare",
        "1xrtx4090,2xrtx4090,2xa100-80gb",
    ),
}


def median_seconds(cmd: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    results = {name: median_seconds(cmd) for name, cmd in CASES.items()}
    base = results["python -c pass (baseline)"]
    worst = 0.0
    for name, seconds in results.items():
        print(f"{name:40s} {seconds * 1000:7.1f} ms   ratio {seconds / base:5.1f}x baseline")
        if "baseline" not in name:
            worst = max(worst, seconds)
    verdict = "OK" if worst < 0.3 else "TOO SLOW"
    print(f"slowest deployctl command: {worst * 1000:.0f} ms (target < 300 ms): {verdict}")
    return 0 if worst < 0.3 else 1


if __name__ == "__main__":
    sys.exit(main())
