"""Run the simulator in-process, on a free loopback port, in a thread of its own."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from deployctl.sim import listen, openai, server
from deployctl.sim.config import SimConfig


@contextmanager
def running(cfg: SimConfig, port: int = 0) -> Iterator[str]:
    """Give the base URL of a simulator serving `cfg` (in its engine's dialect) until the block ends
    (on `port`, or a free one)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        application = openai.app(cfg) if cfg.engine == "vllm" else server.app(cfg)
        runner = listen.runner_for(application)  # as the simulator serves: header deadline, keep-alive bound
        await runner.setup()
        site = await listen.listen(runner, "127.0.0.1", port)
        holder["runner"] = runner
        holder["site"] = site
        holder["port"] = site.sockets[0].getsockname()[1]
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the simulator did not start")
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(holder["site"].close)  # type: ignore[attr-defined]
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(env: dict[str, str], *args: str, port: int | None = None) -> Iterator[str]:
    """Give the base URL of a simulator in a process of its own (its own CPU), stopped when the block ends."""
    port = port or _free_port()
    cmd = [sys.executable, "-m", "deployctl.sim", "--port", str(port), "--hostname", "127.0.0.1", *args]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the simulator did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# A known latency model, for the tests that measure the load generator against it (unit/test_bench.py,
# e2e/test_bench_timing.py): TTFT is TTFT_BASE_MS plus the prompt at PREFILL_RATE tokens/s; ITL is ITL_MS plus
# PER_STREAM_MS for every other stream.
TTFT_BASE_MS, PREFILL_RATE, ITL_MS, PER_STREAM_MS = 30.0, 10_000.0, 20.0, 0.1


@contextmanager
def timed_process(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Give the base URL of a simulator process with the known latency model (no load time, room for 512
    requests in flight), with `extra_env` set too."""
    env = {
        "SIM_LOAD_SECONDS": "0",
        "SIM_TTFT_BASE_MS": str(TTFT_BASE_MS),
        "SIM_PREFILL_TOKENS_PER_S": str(PREFILL_RATE),
        "SIM_ITL_MS": str(ITL_MS),
        "SIM_ITL_PER_STREAM_MS": str(PER_STREAM_MS),
        **(extra_env or {}),
    }
    limits = ("--max-concurrent-requests", "512", "--max-input-tokens", "4000", "--max-total-tokens", "8000")
    with process(env, *limits) as url:
        yield url
