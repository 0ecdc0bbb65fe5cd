"""The simulator's listening socket: aiohttp's connections, each with a deadline for its request headers.

aiohttp's server has no header timeout: a client that sends one byte every second and a half, or
never finishes its headers, holds its connection for ever (400 such connections stayed open). Here
the request line and headers of a connection's first request must arrive within HEADER_TIMEOUT_S of
the connection opening; later requests on a kept-alive connection must start and finish their
headers within KEEPALIVE_S of the last answer (aiohttp's keep-alive timer closes a connection that is
still waiting for a whole request then). The body has its own bound (sim/body.py BODY_TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiohttp import web

HEADER_TIMEOUT_S = 10.0
KEEPALIVE_S = 10.0
HEADERS_END = b"\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """One connection's aiohttp protocol, closed when its first request's headers are not in by the deadline."""

    def __init__(self, inner: Any, limit: float) -> None:
        self.inner = inner
        self.limit = limit
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.tail = b""  # the last bytes seen, so a header end split over two reads is found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(self.limit, self._expired)
        self.inner.connection_made(transport)

    def _expired(self) -> None:
        self.timer = None
        if self.transport is not None:
            self.transport.close()  # aiohttp's connection_lost follows and cleans up

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            if HEADERS_END in self.tail + data:
                self.timer.cancel()
                self.timer = None
            else:
                self.tail = (self.tail + data)[-len(HEADERS_END) :]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


async def listen(runner: web.AppRunner, host: str, port: int) -> asyncio.AbstractServer:
    """Give a server on host:port (0: any free port) serving the runner's application with header deadlines."""
    factory = runner.server
    assert factory is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HeaderDeadline(factory(), HEADER_TIMEOUT_S), host, port, reuse_address=True)


def runner_for(application: web.Application) -> web.AppRunner:
    """Give the application's runner with the simulator's keep-alive bound."""
    return web.AppRunner(application, access_log=None, keepalive_timeout=KEEPALIVE_S, handle_signals=False)


async def _serve(application: web.Application, host: str, port: int) -> None:
    runner = runner_for(application)
    await runner.setup()
    server = await listen(runner, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        await runner.cleanup()


def serve(application: web.Application, host: str, port: int) -> None:
    """Serve the application on host:port until SIGTERM or SIGINT."""
    asyncio.run(_serve(application, host, port))
