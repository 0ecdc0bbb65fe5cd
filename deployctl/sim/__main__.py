"""Run the simulator: `python -m deployctl.sim [the engine's flags]` (the image's entrypoint)."""

from __future__ import annotations

import sys
import time

from aiohttp import web

from deployctl.sim import openai, server
from deployctl.sim.config import from_args


def main(argv: list[str] | None = None) -> None:
    cfg = from_args(sys.argv[1:] if argv is None else argv)
    if cfg.engine == "vllm":
        # vLLM binds its port only once the model is loaded: until then connections are refused.
        time.sleep(cfg.load_seconds)
    print(
        f"simulator: serving {cfg.model_id} ({cfg.engine} API) on {cfg.hostname}:{cfg.port} "
        f"(max_input_tokens={cfg.max_input_tokens}, max_total_tokens={cfg.max_total_tokens}, "
        f"loading for {cfg.load_seconds}s, api key {'on' if cfg.api_key else 'off'})",
        flush=True,
    )
    application = openai.app(cfg) if cfg.engine == "vllm" else server.app(cfg)
    web.run_app(application, host=cfg.hostname, port=cfg.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
