"""A TGI-protocol simulator: TGI's HTTP API with a latency model, for `--simulate` and tests.

Depends on the standard library and aiohttp only: it runs in a small image without deployctl's
other dependencies.
"""
