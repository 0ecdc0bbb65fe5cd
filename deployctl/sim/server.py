"""The simulator's HTTP server: TGI's routes, errors and stream format, with timed tokens."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from deployctl.sim import auth, latency, power
from deployctl.sim.body import BadBody, read_object
from deployctl.sim.config import SimConfig
from deployctl.sim.metrics import Metrics

T = TypeVar("T")


class HttpError(Exception):
    """An error a route answers with: its status and its dialect's JSON body (`errors` turns it into the answer)."""

    status: int
    body: dict[str, Any]


class ApiError(HttpError):
    """An error TGI answers with {"error": ..., "error_type": ...}."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, "error_type": error_type}


def chat_text(content: Any) -> str:
    """Give a chat message's text: a string, or a list of text parts; ValueError for anything else."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ValueError("`content` must be a string or a list of text parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
            raise ValueError('each content part must be {"type": "text", "text": "..."}')
        texts.append(part["text"])
    return "\n".join(texts)


def _validation(message: str) -> ApiError:
    return ApiError(422, f"Input validation error: {message}", "validation")


def check_types(prompt: Any, params: Any) -> None:
    """Refuse values of the wrong JSON type as TGI does before any handler runs: serde rejects the body
    (axum's 422 in plain text), so a streamed route answers before its stream opens."""
    if prompt is not None and not isinstance(prompt, str):
        raise _wrong_type("inputs", prompt, "a string")
    if not isinstance(params, dict):
        raise _wrong_type("parameters", params, "struct GenerateParameters")
    for name in ("max_new_tokens", "top_k", "seed", "top_n_tokens"):
        if params.get(name) is not None and not whole(params[name]):
            raise _wrong_type(f"parameters.{name}", params[name], "u32" if name != "seed" else "u64")
    for name in ("temperature", "repetition_penalty", "frequency_penalty", "top_p", "typical_p"):
        if params.get(name) is not None and not number(params[name]):
            raise _wrong_type(f"parameters.{name}", params[name], "f32")
    stop = params.get("stop")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(x, str) for x in stop)):
        raise _wrong_type("parameters.stop", stop, "a sequence of strings")


def _wrong_type(path: str, value: Any, expected: str) -> PlainError:
    """Give axum's answer to a body whose value at `path` has the wrong JSON type (serde's message)."""
    kind = {bool: "boolean", str: "string", list: "sequence", dict: "map", float: "floating point"}.get(
        type(value), "integer" if isinstance(value, int) else "null" if value is None else "value"
    )
    return PlainError(
        422,
        f"Failed to deserialize the JSON body into the target type: {path}: invalid type: {kind}, expected {expected}",
    )


SEED_MAX = 2**64 - 1


def whole(value: Any) -> bool:
    """Whether a JSON value is an integer (true and false are not: Python counts them as ints)."""
    return isinstance(value, int) and not isinstance(value, bool)


def number(value: Any) -> bool:
    """Whether a JSON value is a finite number (not a bool)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
    )


@dataclass
class Request:
    """A validated generation request."""

    prompt: str
    input_tokens: int
    max_new_tokens: int
    natural: bool  # no max_new_tokens given: the 'model' stops at its own end of sequence
    seed: int | None
    stop: list[str]
    details: bool = True


@dataclass
class Generated:
    tokens: list[tuple[int, str]] = field(default_factory=list)
    finish_reason: str = "length"

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.tokens)


class Simulator:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.in_flight = 0
        self.streams = 0
        self.requests = 0
        self.stall_until = 0.0
        self.metrics = Metrics(kv_capacity=cfg.kv_tokens)
        self.power = power.from_config(cfg.power_model, cfg.num_shard)

    def latency_model(self) -> latency.LatencyModel:
        return self.power.latency(self.cfg.latency) if self.power else self.cfg.latency

    def _streams(self, change: int) -> None:
        self.streams += change
        self.metrics.batch_size = self.streams
        if self.power:
            self.power.streams_changed(self.streams)

    # -- health -------------------------------------------------------------------------------
    def healthy(self) -> bool:
        return not self.cfg.never_healthy and time.monotonic() - self.started >= self.cfg.load_seconds

    # -- validation -------------------------------------------------------------------------------
    async def validate(self, prompt: Any, params: dict[str, Any]) -> Request:
        cfg = self.cfg
        check_types(prompt, params)
        if not prompt:
            raise _validation("`inputs` cannot be empty")
        max_new = params.get("max_new_tokens")
        if max_new is not None and max_new <= 0:
            raise _validation("`max_new_tokens` must be strictly positive")
        for name in ("temperature", "repetition_penalty", "frequency_penalty"):
            value = params.get(name)
            if value is not None and (not number(value) or (name != "frequency_penalty" and value <= 0)):
                raise _validation(f"`{name}` must be strictly positive")
        top_p = params.get("top_p")
        if top_p is not None and (not number(top_p) or not 0 < top_p < 1):
            raise _validation("`top_p` must be > 0.0 and < 1.0")
        top_k = params.get("top_k")
        if top_k is not None and (not whole(top_k) or top_k <= 0):
            raise _validation("`top_k` must be strictly positive")
        stop = params.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _validation("`stop` must be a list of strings")
        if len(stop) > cfg.max_stop_sequences:
            raise _validation(f"`stop` supports up to {cfg.max_stop_sequences} stop sequences. Given: {len(stop)}")
        seed = params.get("seed")
        if seed is not None and (not whole(seed) or not 0 <= seed <= SEED_MAX):
            raise _validation("`seed` must be a non-negative integer")  # TGI's seed is a u64
        n_in = await off_loop(latency.count_tokens, prompt)
        if n_in > cfg.max_input_tokens:
            raise _validation(f"`inputs` must have less than {cfg.max_input_tokens} tokens. Given: {n_in}")
        room = cfg.max_total_tokens - n_in
        if max_new is not None and max_new > room:
            raise _validation(
                f"`inputs` tokens + `max_new_tokens` must be <= {cfg.max_total_tokens}. "
                f"Given: {n_in} `inputs` tokens and {max_new} `max_new_tokens`"
            )
        natural = max_new is None
        length = min(room, latency.natural_length(prompt, seed)) if max_new is None else max_new
        return Request(prompt, n_in, length, natural, seed, stop, bool(params.get("details", True)))

    # -- generation -------------------------------------------------------------------------------
    def admit(self) -> None:
        if self.cfg.crash_after is not None and self.requests >= self.cfg.crash_after:
            print(f"simulator: crashing after {self.requests} requests (SIM_CRASH_AFTER)", file=sys.stderr, flush=True)
            os._exit(1)
        if self.in_flight >= self.cfg.max_concurrent_requests:
            self.metrics.failure("overloaded")
            raise ApiError(429, "Model is overloaded", "overloaded")
        self.requests += 1
        self.in_flight += 1

    async def tokens(
        self, req: Request, arrived: float | None = None
    ) -> AsyncIterator[tuple[int, tuple[int, str], str | None]]:
        """Yield (index, token, finish_reason or None) at the times the latency model gives.

        `arrived` (loop time) is when the request reached the server; the first token is due a TTFT after it.
        """
        loop = asyncio.get_running_loop()
        arrived = loop.time() if arrived is None else arrived
        self.metrics.queue_size += 1
        if self.stall_until > arrived:
            await asyncio.sleep(self.stall_until - arrived)
        self.metrics.queue_size -= 1
        queued = loop.time() - arrived
        self._streams(+1)
        # What the request holds of the KV pool: its prompt and room for every token it may generate (TGI
        # reserves that much at admission; vLLM's blocks fill towards it).
        held = req.input_tokens + req.max_new_tokens
        self.metrics.kv_used += held
        try:
            due = max(arrived, self.stall_until) + self.latency_model().ttft_s(req.input_tokens)
            text = ""
            for i in range(req.max_new_tokens):
                delay = due - loop.time()
                if i == 0:
                    await _until(loop, due)
                elif delay > 0:
                    await asyncio.sleep(delay)
                if self.stall_until > loop.time():
                    await asyncio.sleep(self.stall_until - loop.time())
                    due = loop.time()
                tok = latency.token(req.prompt, req.seed, i)
                text += tok[1]
                finish = None
                if any(text.endswith(s) for s in req.stop):
                    finish = "stop_sequence"
                elif i == req.max_new_tokens - 1:
                    finish = "eos_token" if req.natural else "length"
                if finish and finish == "eos_token":
                    tok = (latency.EOS_ID, "</s>")
                yield i, tok, finish
                if finish:
                    break
                due += self.latency_model().itl_s(self.streams)
        finally:
            self._streams(-1)
            self.metrics.kv_used -= held
            self.metrics.observe_request(loop.time() - arrived, queued, req.input_tokens)

    def release(self, generated: int, duration: float, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.metrics.success(generated, duration)


# The event loop waits in whole milliseconds (selectors round epoll's timeout up), so a sleep ends up to
# ~1 ms late. For the first token, which TTFT measures, sleep to just before it is due and yield from there.
FIRST_TOKEN_SPIN_S = 0.002


async def _until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    """Return at loop time `due`, give or take the loop's own scheduling (not its millisecond rounding)."""
    if due - loop.time() > FIRST_TOKEN_SPIN_S:
        await asyncio.sleep(due - loop.time() - FIRST_TOKEN_SPIN_S)
    while loop.time() < due:
        await asyncio.sleep(0)


def _token_json(tok: tuple[int, str], finish: str | None) -> dict[str, Any]:
    special = finish == "eos_token"
    return {"id": tok[0], "text": tok[1], "logprob": -0.25 if not special else -0.01, "special": special}


def _visible(tok: tuple[int, str], finish: str | None) -> str:
    return "" if finish == "eos_token" else tok[1]


def sse(data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data:{payload}\n\n".encode()


class PlainError(HttpError):
    """An error answered as text/plain, as TGI's web framework (axum's Json extractor) answers a body it
    cannot read: 400 "Failed to parse the request body as JSON", 422 "Failed to deserialize the JSON body
    into the target type" (axum-core 0.4 `JsonRejection`, the version TGI v3.3.4's router builds with)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.body = {}
        self.text = text


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise PlainError(415, "Expected request with `Content-Type: application/json`")
    try:
        return await read_object(request)
    except BadBody as exc:
        if exc.kind == "timeout":
            raise PlainError(408, exc.message) from None
        if exc.kind == "type":
            raise PlainError(422, f"Failed to deserialize the JSON body into the target type: {exc.message}") from None
        raise PlainError(400, f"Failed to parse the request body as JSON: {exc.message}") from None


# Longer texts are tokenized in a worker thread, token by token, so the event loop (and /health) keeps
# answering while a 2 MB prompt is counted (Python's regex engine holds the GIL for a whole findall).
THREAD_ABOVE = 16 * 1024


async def off_loop(fn: Callable[[str], T], text: str) -> T:
    """Give fn(text), run in a worker thread when the text is long."""
    if len(text) <= THREAD_ABOVE:
        return fn(text)
    return await asyncio.to_thread(fn, text)


def _tokens_json(text: str) -> str:
    """Give TGI's /tokenize answer for `text` as JSON text (built in one go: it may run in a thread)."""
    tokens = [{"id": i, "text": t, "start": a, "stop": b} for i, t, a, b in latency.tokenize(text)]
    return json.dumps(tokens, separators=(",", ":"))


class Routes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    @property
    def cfg(self) -> SimConfig:
        return self.sim.cfg

    async def health(self, request: web.Request) -> web.Response:
        if self.sim.healthy():
            return web.Response(status=200)
        return web.json_response({"error": "unhealthy", "error_type": "healthcheck"}, status=503)

    async def info(self, request: web.Request) -> web.Response:
        c = self.cfg
        return web.json_response(
            {
                "model_id": c.model_id,
                "model_sha": None,
                "model_pipeline_tag": "text-generation",
                "max_concurrent_requests": c.max_concurrent_requests,
                "max_best_of": c.max_best_of,
                "max_stop_sequences": c.max_stop_sequences,
                "max_input_tokens": c.max_input_tokens,
                "max_total_tokens": c.max_total_tokens,
                "validation_workers": c.validation_workers,
                "max_client_batch_size": c.max_client_batch_size,
                "router": "text-generation-router",
                "version": c.version,
                "sha": c.sha,
                "docker_label": None,
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": self.cfg.model_id,
                "object": "model",
                "created": int(self.sim.started),
                "owned_by": self.cfg.model_id,
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.sim.metrics.render(), content_type="text/plain")

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        text = body.get("inputs")
        if not isinstance(text, str):
            raise _validation("`inputs` must be a string")
        return web.json_response(text=await off_loop(_tokens_json, text))

    async def chat_tokenize(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        prompt = self._chat_prompt(body)
        tokens = await off_loop(_tokens_json, prompt)
        return web.json_response(text=f'{{"tokenize_response":{tokens},"templated_text":{json.dumps(prompt)}}}')

    # -- /generate, /generate_stream, / ------------------------------------------------------------
    async def compat(self, request: web.Request) -> web.StreamResponse:
        """`POST /`: TGI's compatibility route, which answers a list of one GenerateResponse."""
        body = await _json_body(request)
        if body.get("stream"):
            return await self._stream(request, body)
        return web.json_response([await self._generate_body(body)])

    async def vertex(self, request: web.Request) -> web.Response:
        """`POST /vertex` (router/src/vertex.rs, TGI v3.3.4): every instance generated, {"predictions": [text]}.

        As in TGI: no instances is a 422 "Input validation error"; an instance that fails (validation
        included) makes the whole request a 500 "Incomplete generation" (vertex_compatibility maps every
        generation error so).
        """
        body = await _json_body(request)
        instances = body.get("instances")
        if not isinstance(instances, list):
            raise _wrong_type("instances", instances, "a sequence")
        if not instances:
            raise ApiError(422, "Input validation error", "Input validation error")
        if not all(isinstance(i, dict) and ("inputs" in i or "messages" in i) for i in instances):
            raise PlainError(
                422,
                "Failed to deserialize the JSON body into the target type: instances: "
                "data did not match any variant of untagged enum VertexInstance",
            )

        async def one(instance: dict[str, Any]) -> str:
            if "messages" in instance:
                out = await self._run(await self._chat_request(instance))
                return "".join(t for _, t in out.tokens if out.finish_reason != "eos_token" or t != "</s>")
            params = instance.get("parameters") or {}
            generated = await self._generate_body({"inputs": instance.get("inputs"), "parameters": params})
            return str(generated["generated_text"])

        try:
            predictions = await asyncio.gather(*(one(i) for i in instances))
        except (ApiError, PlainError):
            raise ApiError(500, "Incomplete generation", "Incomplete generation") from None
        return web.json_response({"predictions": predictions})

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        """`POST /invocations` (SageMaker): chat when given messages, else generate."""
        body = await _json_body(request)
        if "messages" in body:
            return await self._chat(request, body)
        if body.get("stream"):
            return await self._stream(request, body)
        return web.json_response(await self._generate_body(body))

    async def generate(self, request: web.Request) -> web.Response:
        return web.json_response(await self._generate_body(await _json_body(request)))

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, await _json_body(request))

    async def _run(self, req: Request) -> Generated:
        out = Generated()
        start = time.monotonic()
        self.sim.admit()
        try:
            async for _, tok, finish in self.sim.tokens(req):
                out.tokens.append(tok)
                out.finish_reason = finish or out.finish_reason
        finally:
            self.sim.release(len(out.tokens), time.monotonic() - start, ok=True)
        return out

    async def _generate_body(self, body: dict[str, Any]) -> dict[str, Any]:
        req = await self.sim.validate(body.get("inputs"), body.get("parameters") or {})
        out = await self._run(req)
        text = "".join(
            _visible(t, out.finish_reason if i == len(out.tokens) - 1 else None) for i, t in enumerate(out.tokens)
        )
        result: dict[str, Any] = {"generated_text": text}
        if req.details:
            result["details"] = {
                "finish_reason": out.finish_reason,
                "generated_tokens": len(out.tokens),
                "seed": req.seed,
                "prefill": [],
                "tokens": [
                    _token_json(t, out.finish_reason if i == len(out.tokens) - 1 else None)
                    for i, t in enumerate(out.tokens)
                ],
            }
        return result

    async def _open_stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        return resp

    async def _stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        # TGI answers 200 and sends a validation or overload error as an event, not as a status; a value of the
        # wrong type is refused before (serde, at extraction).
        params = body.get("parameters")
        params = {} if params is None else params
        check_types(body.get("inputs"), params)
        resp = await self._open_stream(request)
        try:
            req = await self.sim.validate(body.get("inputs"), params)
            self.sim.admit()
        except ApiError as exc:
            await resp.write(sse(exc.body))
            return resp
        start, count, text = time.monotonic(), 0, ""
        try:
            async for i, tok, finish in self.sim.tokens(req, request.get(auth.ARRIVED)):
                count += 1
                text += _visible(tok, finish)
                event: dict[str, Any] = {
                    "index": i,
                    "token": _token_json(tok, finish),
                    "generated_text": None,
                    "details": None,
                }
                if finish:
                    event["generated_text"] = text
                    event["details"] = {
                        "finish_reason": finish,
                        "generated_tokens": count,
                        "input_length": req.input_tokens,
                        "seed": req.seed,
                    }
                await resp.write(sse(event))
        except (ConnectionResetError, asyncio.CancelledError):
            self.sim.release(count, time.monotonic() - start, ok=False)
            raise
        self.sim.release(count, time.monotonic() - start, ok=True)
        return resp

    # -- OpenAI-style ----------------------------------------------------------------------------------
    @staticmethod
    def _chat_prompt(body: dict[str, Any]) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _validation("`messages` must be a non-empty list")
        parts = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise _validation("each message needs a `role`")
            try:
                parts.append(f"{m['role']}: {chat_text(m.get('content'))}")
            except ValueError:
                # TGI's MessageContent is an untagged enum of a string or typed chunks (router/src/lib.rs).
                raise PlainError(
                    422,
                    "Failed to deserialize the JSON body into the target type: messages: "
                    "data did not match any variant of untagged enum MessageContent",
                ) from None
        return "\n".join(parts) + "\nassistant:"

    def _openai_params(self, body: dict[str, Any], chat: bool) -> tuple[Any, dict[str, Any]]:
        """Give (prompt, TGI parameters) of an OpenAI-style body, its types checked (before any stream opens)."""
        # max_completion_tokens: OpenAI's newer name for max_tokens, which many clients send.
        limit = body.get("max_tokens", body.get("max_completion_tokens")) if chat else body.get("max_tokens")
        stop = body.get("stop")
        params = {
            "max_new_tokens": limit,
            "seed": body.get("seed"),
            "stop": [stop] if isinstance(stop, str) else stop,
            "temperature": (body.get("temperature") or None) if chat else None,
            "top_p": body.get("top_p") if chat else None,
        }
        prompt = self._chat_prompt(body) if chat else body.get("prompt")
        params = {k: v for k, v in params.items() if v is not None}
        check_types(prompt, params)
        return prompt, params

    async def _chat_request(self, body: dict[str, Any]) -> Request:
        return await self.sim.validate(*self._openai_params(body, chat=True))

    async def _prompt_request(self, body: dict[str, Any]) -> Request:
        return await self.sim.validate(*self._openai_params(body, chat=False))

    @staticmethod
    def _openai_finish(finish: str) -> str:
        return {"eos_token": "stop", "stop_sequence": "stop"}.get(finish, finish)

    def _head(self, kind: str) -> dict[str, Any]:
        return {
            "id": "",
            "object": kind,
            "created": int(time.time()),
            "model": self.cfg.model_id,
            "system_fingerprint": f"{self.cfg.version}-{self.cfg.sha}",
        }

    @staticmethod
    def _usage(req: Request, n: int) -> dict[str, int]:
        return {"prompt_tokens": req.input_tokens, "completion_tokens": n, "total_tokens": req.input_tokens + n}

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, await _json_body(request))

    async def _chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if body.get("stream"):
            return await self._openai_stream(request, body, chat=True)
        req = await self._chat_request(body)
        out = await self._run(req)
        content = out.text if out.finish_reason != "eos_token" else "".join(t for _, t in out.tokens[:-1])
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "logprobs": None,
            "finish_reason": self._openai_finish(out.finish_reason),
        }
        return web.json_response(
            {**self._head("chat.completion"), "choices": [choice], "usage": self._usage(req, len(out.tokens))}
        )

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json_body(request)
        if body.get("stream"):
            return await self._openai_stream(request, body, chat=False)
        req = await self._prompt_request(body)
        out = await self._run(req)
        text = out.text if out.finish_reason != "eos_token" else "".join(t for _, t in out.tokens[:-1])
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self._openai_finish(out.finish_reason)}
        return web.json_response(
            {**self._head("text_completion"), "choices": [choice], "usage": self._usage(req, len(out.tokens))}
        )

    async def _openai_stream(self, request: web.Request, body: dict[str, Any], chat: bool) -> web.StreamResponse:
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            # TGI's router rejects the body before any stream starts (serde: StreamOptions is a struct).
            raise PlainError(
                422, "Failed to deserialize the JSON body into the target type: stream_options: expected a map"
            )
        prompt, params = self._openai_params(body, chat)  # wrong types: axum's 422, before the stream opens
        resp = await self._open_stream(request)
        try:
            req = await self.sim.validate(prompt, params)
            self.sim.admit()
        except ApiError as exc:
            await resp.write(sse(exc.body))
            return resp
        include_usage = (options or {}).get("include_usage") is True
        kind = "chat.completion.chunk" if chat else "text_completion"
        start, count = time.monotonic(), 0
        try:
            async for _, tok, finish in self.sim.tokens(req):
                count += 1
                text = _visible(tok, finish)
                reason = self._openai_finish(finish) if finish else None
                if chat:
                    delta = {"role": "assistant", "content": text, "tool_calls": None}
                    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                else:
                    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason or ""}
                event = {**self._head(kind), "choices": [choice]}
                if chat:
                    event["usage"] = self._usage(req, count) if finish and include_usage else None
                await resp.write(sse(event))
            await resp.write(sse("[DONE]"))
        except (ConnectionResetError, asyncio.CancelledError):
            self.sim.release(count, time.monotonic() - start, ok=False)
            raise
        self.sim.release(count, time.monotonic() - start, ok=True)
        return resp

    # -- test hooks ------------------------------------------------------------------------------------
    async def stall(self, request: web.Request) -> web.Response:
        """Stall every request (new and in progress) for `seconds`: a GC pause, a swap storm."""
        try:
            seconds = float(request.query.get("seconds", "1"))
        except ValueError:
            raise _validation("`seconds` must be a number") from None
        if not 0 <= seconds <= 60:
            raise _validation("`seconds` must be between 0 and 60")
        self.sim.stall_until = asyncio.get_running_loop().time() + seconds
        return web.json_response({"stalled_for": seconds})


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer a route's HttpError (either dialect's) with its status and body."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except PlainError as exc:
        return web.Response(status=exc.status, text=exc.text)
    except HttpError as exc:
        return web.json_response(exc.body, status=exc.status)


def app(cfg: SimConfig) -> web.Application:
    """Give the simulator's aiohttp application."""
    sim = Simulator(cfg)
    r = Routes(sim)
    gate = auth.middleware(cfg.api_key, control=cfg.control_routes)
    application = web.Application(middlewares=[auth.arrival, gate, errors], client_max_size=2_000_000)
    application.router.add_get("/", r.health)
    application.router.add_post("/", r.compat)
    application.router.add_post("/invocations", r.invocations)
    application.router.add_post("/vertex", r.vertex)
    application.router.add_get("/health", r.health)
    application.router.add_get("/ping", r.health)
    application.router.add_get("/info", r.info)
    application.router.add_get("/metrics", r.metrics)
    application.router.add_get("/v1/models", r.models)
    application.router.add_post("/tokenize", r.tokenize)
    application.router.add_post("/chat_tokenize", r.chat_tokenize)
    application.router.add_post("/generate", r.generate)
    application.router.add_post("/generate_stream", r.generate_stream)
    application.router.add_post("/v1/chat/completions", r.chat)
    application.router.add_post("/v1/completions", r.completions)
    if cfg.control:
        application.router.add_post("/_sim/stall", r.stall)
    if sim.power:
        power.add_routes(application, sim.power, cfg.api_key)
    return application
