"""The load generator: streamed requests, closed loop (fixed concurrency) or open loop (Poisson arrivals).

Open loop sends every request at its scheduled time whatever the server does, and measures each
request's latency from that scheduled time, so a stalled server cannot hide its stall (no
coordinated omission). Times come from one monotonic clock (perf_counter).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from deployctl.engines import dialects
from deployctl.engines.dialects import Api
from deployctl.probe.sse import DONE, parse_sse_line

WORDS = [
    "patient",
    "record",
    "claim",
    "ledger",
    "policy",
    "account",
    "transfer",
    "review",
    "summary",
    "request",
    "approval",
    "audit",
    "branch",
    "ward",
    "clinic",
    "report",
    "schedule",
    "invoice",
    "statement",
    "balance",
    "payment",
    "reference",
    "customer",
    "doctor",
    "nurse",
]


@dataclass
class Result:
    """One request as the client saw it; times are perf_counter seconds."""

    scheduled: float
    sent: float = 0.0
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    end: float | None = None
    output_tokens: int = 0
    error: str | None = None
    warmup: bool = False
    resent: int = 0  # sent again after the server closed a kept-alive connection before answering (see `one`)

    @property
    def ok(self) -> bool:
        return self.error is None and self.first_token is not None and self.end is not None


@dataclass(frozen=True)
class Workload:
    """What each request asks for."""

    endpoint: str
    prompt_tokens: int = 256
    output_tokens: int = 64
    api: Api = "generate"
    seed: int = 42
    api_key: str | None = None
    timeout_s: float = 300.0
    dialect: str = dialects.TGI.name  # the API the server speaks, by name (engines/dialects.py)


def make_prompt(n_tokens: int, rng: random.Random, words_per_token: float = 1.0) -> str:
    """Give a prompt of about n_tokens: words drawn from a fixed list with a fixed seed."""
    return " ".join(rng.choice(WORDS) for _ in range(max(1, round(n_tokens * words_per_token))))


async def calibrate(session: Any, workload: Workload) -> tuple[float, str]:
    """Give (words per token, how it was measured) using the server's own tokenizer (/tokenize)."""
    sample = make_prompt(200, random.Random(workload.seed))
    # TGI takes {"inputs"} and answers a list of tokens; vLLM takes {"prompt"} and answers {"count"}.
    body = dialects.get(workload.dialect).tokenize_body(sample)
    try:
        async with session.post(f"{workload.endpoint}/tokenize", json=body, headers=_headers(workload)) as resp:
            if resp.status == 200:
                tokens = await resp.json()
                count = (
                    tokens.get("count") if isinstance(tokens, dict) else len(tokens) if isinstance(tokens, list) else 0
                )
                if isinstance(count, int) and count > 0:
                    return 200 / count, "the server's tokenizer (/tokenize)"
    except Exception:  # any failure falls back to the stated approximation
        pass
    return 1 / 1.3, "approximation: 1.3 tokens per word (the server has no /tokenize)"


def _headers(w: Workload) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.api_key}"} if w.api_key else {}


def _body(w: Workload, prompt: str, i: int) -> tuple[str, dict[str, Any]]:
    return dialects.get(w.dialect).stream_request(w.api, prompt, w.output_tokens, seed=w.seed + i, exact=True)


async def one(client: Client, w: Workload, prompt: str, i: int, result: Result) -> Result:
    """Send one streamed request and stamp every token as it arrives.

    A request that meets a kept-alive connection the server closed while it sat idle is sent once more on
    a new connection (see `_send`); its times still start at the first send, so the retry costs what it cost.
    """
    import aiohttp

    dialect = dialects.get(w.dialect)
    path, body = _body(w, prompt, i)
    usage_tokens: int | None = None
    result.sent = time.perf_counter()
    try:
        resp = await _send(client, w.endpoint + path, body, _headers(w), result)
        async with resp:
            if resp.status != 200:
                result.error = f"http_{resp.status}"
                await resp.read()
                return result
            async for raw in resp.content:
                now = time.perf_counter()
                try:
                    event = parse_sse_line(raw)
                except ValueError:
                    result.error = "bad_stream"  # one garbled line fails this request, not the whole bench
                    return result
                if event is None:
                    continue
                if event is DONE:
                    break
                chunk = dialect.read_chunk(w.api, event)
                if chunk.error is not None:
                    result.error = chunk.error
                    return result
                if chunk.usage is not None:
                    usage_tokens = chunk.usage
                    continue
                if not chunk.token:
                    continue
                if result.first_token is None:
                    result.first_token = now
                result.token_times.append(now)
                result.output_tokens += 1
            result.end = time.perf_counter()
            if isinstance(usage_tokens, int):
                result.output_tokens = usage_tokens  # the server's own count beats counting chunks
            if result.first_token is None:
                result.error = "no_tokens"
    except TimeoutError:
        result.error = "timeout"
    except aiohttp.ClientError as exc:
        result.error = f"connection:{type(exc).__name__}"
    return result


@dataclass
class Client:
    """The load generator's HTTP sessions: one keeps connections alive between requests, the other opens a
    new one for each request it sends (where a request goes again, see `_send`)."""

    pooled: Any
    fresh: Any


KEEPALIVE_S = 4.0  # under the engines' own keep-alive (vLLM: 5 s; see _send)


@asynccontextmanager
async def _client(w: Workload) -> AsyncIterator[Client]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=w.timeout_s)
    # A connection idle in the pool is dropped before the server closes it (aiohttp keeps one 15 s by
    # default); the race that remains, a stall at the wrong moment, is what `_send` handles.
    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(_mark_reused)
    pooled = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S)
    async with (
        aiohttp.ClientSession(connector=pooled, timeout=timeout, trace_configs=[trace]) as kept,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=timeout) as fresh,
    ):
        yield Client(kept, fresh)


async def _send(client: Client, url: str, body: dict[str, Any], headers: dict[str, str], result: Result) -> Any:
    """Give the response to one POST, sent a second time only when a kept-alive connection was found closed.

    An HTTP/1.1 server closes a connection that sits idle past its keep-alive timeout (vLLM 0.32.0: uvicorn's
    timeout_keep_alive = VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s, vllm/envs.py:111, passed in
    vllm/entrypoints/launchers/api_server/entry.py:153). A request written just as it does reaches no engine
    and fails as ServerDisconnectedError (or a reset) before any byte of an answer. On a loaded machine a
    stalled client or server turns a moment's idleness into that race. RFC 9112 section 9.3.1 lets a client
    retry such a request when it knows the request changes nothing, as a completion does (the openai client
    retries connection errors too). Only a request that took a kept-alive connection is sent again, once,
    on a new connection: a new connection the server closes unanswered is the server's answer, an error.
    """
    import aiohttp

    attempt: dict[str, bool] = {}
    try:
        return await client.pooled.post(url, json=body, headers=headers, trace_request_ctx=attempt)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        if not attempt.get("reused"):
            raise
    result.resent += 1
    return await client.fresh.post(url, json=body, headers=headers)


async def _mark_reused(_session: Any, ctx: Any, _params: Any) -> None:
    """aiohttp trace hook: this request took a kept-alive connection from the pool."""
    if isinstance(ctx.trace_request_ctx, dict):
        ctx.trace_request_ctx["reused"] = True


async def closed_loop(
    w: Workload,
    concurrency: int,
    requests: int,
    warmup: int = 0,
    tick: Callable[[int], None] | None = None,
    *,
    seconds: float | None = None,
    at_start: Callable[[float], None] | None = None,
) -> tuple[list[Result], float, str]:
    """Give results of `requests` requests (after `warmup`) at fixed concurrency, the measured span and the prompt note.

    With `seconds`, no request starts after that long (from the first worker's start): a fixed window.
    """
    async with _client(w) as client:
        ratio, note = await calibrate(client.pooled, w)
        rng = random.Random(w.seed)
        prompts = [make_prompt(w.prompt_tokens, rng, ratio) for _ in range(min(requests + warmup, 64))]
        total = requests + warmup
        issued = 0
        results: list[Result] = []
        # Spread the workers' starts over one request's duration: started together, equal requests
        # stay in lockstep and every round hits the server as one burst the generator made.
        probe = await one(client, w, prompts[0], -1, Result(scheduled=time.perf_counter()))
        spread = (probe.end - probe.scheduled) if probe.ok and probe.end else 0.0
        start = time.perf_counter()
        if at_start:
            at_start(start)
        deadline = start + seconds if seconds is not None else float("inf")

        async def worker(k: int) -> None:
            nonlocal issued
            await asyncio.sleep(spread * k / concurrency)
            while issued < total and time.perf_counter() < deadline:
                i = issued
                issued += 1
                r = Result(scheduled=time.perf_counter(), warmup=i < warmup)
                results.append(await one(client, w, prompts[i % len(prompts)], i, r))
                if tick:
                    tick(len(results))

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    measured = [r for r in results if not r.warmup]
    return measured, _span(measured), note


def poisson_schedule(rate: float, count: int, seed: int) -> list[float]:
    """Give `count` arrival offsets (seconds from start) of a Poisson process at `rate` per second."""
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(t)
    return out


async def open_loop(
    w: Workload,
    rate: float,
    requests: int,
    warmup: int = 0,
    tick: Callable[[int], None] | None = None,
    at_start: Callable[[float], None] | None = None,
) -> tuple[list[Result], float, str]:
    """Give results of requests sent on a Poisson schedule at `rate`/s, each timed from its scheduled moment."""
    async with _client(w) as client:
        ratio, note = await calibrate(client.pooled, w)
        rng = random.Random(w.seed)
        prompts = [make_prompt(w.prompt_tokens, rng, ratio) for _ in range(min(requests + warmup, 64))]
        offsets = poisson_schedule(rate, requests + warmup, w.seed)
        tasks = []
        done = 0

        def finished(_: Any) -> None:
            nonlocal done
            done += 1
            if tick:
                tick(done)

        start = time.perf_counter()
        if at_start:
            at_start(start)
        for i, offset in enumerate(offsets):
            due = start + offset
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            r = Result(scheduled=due, warmup=i < warmup)
            task = asyncio.create_task(one(client, w, prompts[i % len(prompts)], i, r))
            task.add_done_callback(finished)
            tasks.append(task)
        results = await asyncio.gather(*tasks)
    measured = [r for r in results if not r.warmup]
    return measured, _span(measured), note


def _span(results: list[Result]) -> float:
    ends = [r.end for r in results if r.end is not None]
    if not results or not ends:
        return 0.0
    return max(ends) - min(r.scheduled for r in results)
