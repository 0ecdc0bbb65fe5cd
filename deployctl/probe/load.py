"""The load generator: streamed requests, closed loop (fixed concurrency) or open loop (Poisson arrivals).

Open loop sends every request at its scheduled time whatever the server does, and measures each
request's latency from that scheduled time, so a stalled server cannot hide its stall (no
coordinated omission). Times come from one monotonic clock (perf_counter).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
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


async def one(session: Any, w: Workload, prompt: str, i: int, result: Result) -> Result:
    """Send one streamed request and stamp every token as it arrives."""
    import aiohttp

    dialect = dialects.get(w.dialect)
    path, body = _body(w, prompt, i)
    usage_tokens: int | None = None
    result.sent = time.perf_counter()
    try:
        async with session.post(w.endpoint + path, json=body, headers=_headers(w)) as resp:
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


KEEPALIVE_S = 4.0  # under the engines' own keep-alive (vLLM: 5 s; see _session)


def _session(w: Workload, connections: int) -> Any:
    import aiohttp

    # A connection idle in the pool is dropped before the server closes it: vLLM 0.32.0 serves with uvicorn's
    # timeout_keep_alive = VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s by default (vllm/envs.py; used in
    # vllm/entrypoints/launchers/api_server/entry.py), and aiohttp's pool keeps one for 15 s. A request sent on
    # a connection the server has just closed fails as ServerDisconnectedError without reaching the engine:
    # seen on a loaded machine, where the probe's connection sat idle while the workers' starts were spread.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=w.timeout_s))


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
    async with _session(w, concurrency) as session:
        ratio, note = await calibrate(session, w)
        rng = random.Random(w.seed)
        prompts = [make_prompt(w.prompt_tokens, rng, ratio) for _ in range(min(requests + warmup, 64))]
        total = requests + warmup
        issued = 0
        results: list[Result] = []
        # Spread the workers' starts over one request's duration: started together, equal requests
        # stay in lockstep and every round hits the server as one burst the generator made.
        probe = await one(session, w, prompts[0], -1, Result(scheduled=time.perf_counter()))
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
                results.append(await one(session, w, prompts[i % len(prompts)], i, r))
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
    async with _session(w, 0) as session:
        ratio, note = await calibrate(session, w)
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
            task = asyncio.create_task(one(session, w, prompts[i % len(prompts)], i, r))
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
