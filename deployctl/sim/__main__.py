"""Run the simulator: `python -m deployctl.sim [TGI launcher flags]` (the image's entrypoint)."""

from __future__ import annotations

import sys

from aiohttp import web

from deployctl.sim.config import from_args
from deployctl.sim.server import app


def main(argv: list[str] | None = None) -> None:
    cfg = from_args(sys.argv[1:] if argv is None else argv)
    print(
        f"simulator: serving {cfg.model_id} on {cfg.hostname}:{cfg.port} "
        f"(max_input_tokens={cfg.max_input_tokens}, max_total_tokens={cfg.max_total_tokens}, "
        f"loading for {cfg.load_seconds}s, api key {'on' if cfg.api_key else 'off'})",
        flush=True,
    )
    web.run_app(app(cfg), host=cfg.hostname, port=cfg.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
