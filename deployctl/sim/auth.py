"""The simulator's one gate: which routes answer, and which need the API key.

Probe routes (GET /, /health, /ping, /info, /metrics, /v1/models) stay open, as in TGI's
`info_routes` (router/src/server.rs), so health checks and monitoring work without the key.
Every other route, POST /chat_tokenize included (TGI leaves that one open; we do not), needs
`Authorization: Bearer <key>` compared exactly and in constant time: TGI lower-cases both
sides, which lets a case-changed key in, so the simulator is stricter than the engine here.
The control routes (`/_sim/*`) exist only when fault injection is on for the stack
(SimConfig.control), and then need the key too.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:  # the image's Debian aiohttp (3.8) has no Middleware type at run time
    from aiohttp.typedefs import Middleware

PROBES = frozenset({"/", "/health", "/ping", "/info", "/metrics", "/v1/models"})
CONTROL_PREFIX = "/_sim/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_probe(request: web.Request) -> bool:
    """Whether a request is a read-only probe that needs no key."""
    return request.method in ("GET", "HEAD") and request.path in PROBES


def key_matches(header: str, api_key: str) -> bool:
    """Whether an Authorization header carries `Bearer <api_key>`: the scheme in any case (RFC 9110
    11.1), the key itself exactly, compared in constant time."""
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), api_key.encode()
    )


# Typed request storage where aiohttp has it (newer releases warn on a plain string key); the simulator's image
# runs Debian bookworm's python3-aiohttp, which has no web.RequestKey: a plain key there.
ARRIVED: Any = web.RequestKey("arrived", float) if hasattr(web, "RequestKey") else "arrived"


@web.middleware
async def arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp when the request reached the server: TTFT counts from here, not after parsing."""
    request[ARRIVED] = asyncio.get_running_loop().time()
    return await handler(request)


def middleware(
    api_key: str | None,
    control: bool,
    probes: frozenset[str] = PROBES,
    denied: Callable[[], web.StreamResponse] = lambda: web.Response(status=401),
    guarded: Callable[[web.Request], bool] | None = None,
) -> Middleware:
    """Give the aiohttp middleware that hides control routes and checks the key.

    Which requests need the key: with `guarded`, those it says (vLLM's rule: a path prefix) and the
    control routes; without it, every request but the probe GETs (the simulator's TGI rule).
    """

    def needs_key(request: web.Request) -> bool:
        if guarded is not None:
            return guarded(request) or request.path.startswith(CONTROL_PREFIX)
        return not (request.method in ("GET", "HEAD") and request.path in probes)

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX) and not control:
            raise web.HTTPNotFound()
        if api_key and needs_key(request) and not key_matches(request.headers.get("Authorization", ""), api_key):
            return denied()  # TGI's own answer is a 401 with an empty body; vLLM's carries a JSON error
        return await handler(request)

    return gate
