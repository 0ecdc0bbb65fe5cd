"""Run the simulator: `python -m deployctl.sim [the engine's flags]` (the image's entrypoint)."""

from __future__ import annotations

import os
import sys
import time

from deployctl.sim import listen, openai, server
from deployctl.sim.config import SimConfig, from_args


def main(argv: list[str] | None = None) -> None:
    cfg = from_args(sys.argv[1:] if argv is None else argv)
    if cfg.engine == "vllm":
        # vLLM binds its port only once the model is loaded: until then connections are refused. A start
        # that never finishes (SIM_NEVER_HEALTHY) is a vLLM that never binds; a vLLM whose engine core
        # dies exits within a second (v1/engine/core_client.py), it never answers 503 for long.
        print(f"simulator: loading (vLLM API, {cfg.load_seconds}s)", flush=True)
        time.sleep(cfg.load_seconds)
        while cfg.never_healthy:
            time.sleep(3600)
    print(startup_report(cfg), flush=True)
    print(
        f"simulator: serving {cfg.model_id} ({cfg.engine} API) on {cfg.hostname}:{cfg.port} "
        f"(max_input_tokens={cfg.max_input_tokens}, max_total_tokens={cfg.max_total_tokens}, "
        f"loading for {cfg.load_seconds}s, api key {'on' if cfg.api_key else 'off'})",
        flush=True,
    )
    application = openai.app(cfg) if cfg.engine == "vllm" else server.app(cfg)
    listen.serve(application, cfg.hostname, cfg.port)


def startup_report(cfg: SimConfig) -> str:
    """Give the line the engine prints once its KV cache is allocated, in its own words (engines/<name>.py
    parse_startup_log reads it): the plan's KV tokens, or SIM_KV_TOKENS to rehearse a shortfall."""
    tokens = cfg.kv_tokens
    if cfg.engine == "vllm":
        return (
            f"(EngineCore pid={os.getpid()}) INFO [kv_cache_utils.py] GPU KV cache size: {tokens:,} tokens, "
            f"Maximum concurrency for {cfg.max_total_tokens:,} tokens per request: {tokens / cfg.max_total_tokens:.2f}x"
        )
    return f"INFO text_generation_launcher: KV-cache blocks: {tokens}, size: 1"


if __name__ == "__main__":
    main()
