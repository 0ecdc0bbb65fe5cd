"""The simulator speaking vLLM's OpenAI-compatible API: routes, auth, errors and SSE chunks as vLLM v0.30 sends them.

Shapes from vLLM's source as summarised in tests/data/vllm/api.md: completions and chat (streamed and
not, `stream_options.include_usage`), /v1/models with max_model_len, /health, /version, /tokenize,
/metrics under vLLM's names, Bearer auth on /v1 paths, 400 for a prompt over max_model_len.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from deployctl.sim import auth, latency, power
from deployctl.sim.config import SimConfig
from deployctl.sim.server import HttpError, Request, Simulator, errors

# Paths vLLM's auth middleware guards (entrypoints/serve/middleware/authenticate.py); OPTIONS never.
AUTH_PREFIXES = ("/v1", "/v2", "/inference")
COMPLETION_DEFAULT_MAX_TOKENS = 16  # CompletionRequest.max_tokens default


class OpenAIError(HttpError):
    """vLLM's error envelope: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": status}}


def _bad(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, "BadRequestError", param)


def sse(data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


class VllmRoutes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cfg: SimConfig = sim.cfg

    # -- open routes ---------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        # vLLM does not listen until it is up (see __main__); 503 means a dead engine.
        return web.Response(status=503 if self.cfg.never_healthy else 200)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.cfg.version})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.sim.metrics.render_vllm(self.cfg.model_id), content_type="text/plain")

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        prompt = body.get("prompt") if "prompt" in body else self._chat_prompt(body)
        if not isinstance(prompt, str):
            raise _bad("`prompt` must be a string", "prompt")
        tokens = [t[0] for t in latency.tokenize(prompt)]
        return web.json_response(
            {"count": len(tokens), "max_model_len": self.cfg.max_total_tokens, "tokens": tokens, "token_strs": None}
        )

    # -- guarded routes --------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        card = {
            "id": self.cfg.model_id,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.cfg.model_path or self.cfg.model_id,
            "parent": None,
            "max_model_len": self.cfg.max_total_tokens,
            "permission": [{"id": f"modelperm-{uuid.uuid4().hex}", "object": "model_permission"}],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise _bad("`prompt` must be a non-empty string", "prompt")
        limit = body.get("max_tokens", COMPLETION_DEFAULT_MAX_TOKENS)
        return await self._answer(request, body, prompt, limit, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        return await self._answer(request, body, self._chat_prompt(body), limit, chat=True)

    # -- the work --------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _bad("Expecting value: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _bad("the body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.cfg.model_id:
            raise OpenAIError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        return body

    @staticmethod
    def _chat_prompt(body: dict[str, Any]) -> str:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("`messages` must be a non-empty list", "messages")
        parts = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise _bad("each message needs a `role`", "messages")
            content = m.get("content") or ""
            if isinstance(content, list):
                content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
            parts.append(f"{m['role']}: {content}")
        return "\n".join(parts) + "\nassistant:"

    def _request(self, body: dict[str, Any], prompt: str, limit: Any) -> Request:
        L = self.cfg.max_total_tokens
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise _bad("max_tokens must be at least 1", "max_tokens")
        if limit is not None and limit > L:
            # Spelling (missing space included) from vLLM's renderers/params.py.
            raise _bad(
                f"max_tokens={limit}cannot be greater than max_model_len=max_total_tokens={L}. "
                "Please request fewer output tokens.",
                "max_tokens",
            )
        stream_options = body.get("stream_options")
        if stream_options is not None and not body.get("stream"):
            raise _bad("Stream options can only be defined when `stream=True`.", "stream_options")
        n_in = latency.count_tokens(prompt)
        wanted = limit if limit is not None else 0
        if n_in + wanted > L or n_in >= L:
            raise _bad(
                f"This model's maximum context length is {L} tokens. However, you requested {wanted} output tokens "
                f"and your prompt contains {n_in} input tokens, for a total of {n_in + wanted} tokens. Please reduce "
                "the length of the input prompt or the number of requested output tokens.",
                "input_tokens",
            )
        seed = body.get("seed") if isinstance(body.get("seed"), int) else None
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
        natural = limit is None  # no limit: the "model" stops at its own end of sequence
        length = min(L - n_in, latency.natural_length(prompt, seed)) if limit is None else limit
        return Request(prompt, n_in, length, natural, seed, stop)

    def _head(self, rid: str, kind: str, created: int) -> dict[str, Any]:
        return {"id": rid, "object": kind, "created": created, "model": self.cfg.model_id}

    @staticmethod
    def _usage(req: Request, n: int) -> dict[str, int]:
        return {"prompt_tokens": req.input_tokens, "completion_tokens": n, "total_tokens": req.input_tokens + n}

    @staticmethod
    def _finish(reason: str) -> str:
        return "length" if reason == "length" else "stop"

    async def _answer(
        self, request: web.Request, body: dict[str, Any], prompt: str, limit: Any, chat: bool
    ) -> web.StreamResponse:
        req = self._request(body, prompt, limit)
        self.sim.admit()
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream"):
            # include_usage defaults to true once stream_options is sent (entrypoints/serve/utils/api_utils.py).
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage", True))
            return await self._stream(request, req, rid, created, chat, include_usage)
        start = time.monotonic()
        tokens: list[str] = []
        finish = "length"
        try:
            async for _, tok, reason in self.sim.tokens(req, request.get("arrived")):
                if reason != "eos_token":
                    tokens.append(tok[1])
                finish = reason or finish
        finally:
            self.sim.release(len(tokens), time.monotonic() - start, ok=True)
        self.sim.metrics.count_tokens(req.input_tokens, len(tokens))
        text = "".join(tokens)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "tool_calls": [], "reasoning": None},
                "logprobs": None,
                "finish_reason": self._finish(finish),
                "stop_reason": None,
                "token_ids": None,
            }
        else:
            choice = {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": self._finish(finish),
                "stop_reason": None,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "token_ids": None,
            }
        kind = "chat.completion" if chat else "text_completion"
        answer = {
            **self._head(rid, kind, created),
            "choices": [choice],
            "usage": {**self._usage(req, len(tokens)), "prompt_tokens_details": None},
            "system_fingerprint": None,
            "service_tier": None,
            "kv_transfer_params": None,
        }
        if chat:
            answer.update({"prompt_logprobs": None, "prompt_token_ids": None})
        return web.json_response(answer)

    async def _stream(
        self, request: web.Request, req: Request, rid: str, created: int, chat: bool, include_usage: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        start, count = time.monotonic(), 0
        loop = asyncio.get_running_loop()
        arrived = previous = request.get("arrived", loop.time())
        try:
            async for i, tok, reason in self.sim.tokens(req, request.get("arrived")):
                count += 1
                now = loop.time()
                if i == 0:
                    self.sim.metrics.ttft.observe(now - arrived)
                else:
                    self.sim.metrics.itl.observe(now - previous)
                previous = now
                text = "" if reason == "eos_token" else tok[1]
                finish = self._finish(reason) if reason else None
                if chat:
                    if i == 0:
                        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
                        await resp.write(
                            sse({**self._head(rid, kind, created), "choices": [{**first, "finish_reason": None}]})
                        )
                    delta = {"content": text} if text or not finish else {}
                    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                else:
                    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}
                if finish:
                    choice["stop_reason"] = None
                await resp.write(sse({**self._head(rid, kind, created), "choices": [choice], "usage": None}))
            if include_usage:
                await resp.write(
                    sse({**self._head(rid, kind, created), "choices": [], "usage": self._usage(req, count)})
                )
            await resp.write(sse("[DONE]"))
        except (ConnectionResetError, asyncio.CancelledError):
            self.sim.release(count, time.monotonic() - start, ok=False)
            raise
        self.sim.release(count, time.monotonic() - start, ok=True)
        self.sim.metrics.count_tokens(req.input_tokens, count)
        return resp

    async def stall(self, request: web.Request) -> web.Response:
        seconds = float(request.query.get("seconds", "1"))
        self.sim.stall_until = asyncio.get_running_loop().time() + seconds
        return web.json_response({"stalled_for": seconds})


# vLLM's open routes (entrypoints/openai/api_server.py: the API-key check covers /v1 only): /health,
# /ping, /version, /metrics. Every other route needs the key here (the simulator's one rule, sim/auth.py).
VLLM_PROBES = frozenset({"/health", "/ping", "/version", "/metrics"})


def app(cfg: SimConfig) -> web.Application:
    """Give the vLLM-dialect simulator's aiohttp application."""
    sim = Simulator(cfg)
    r = VllmRoutes(sim)
    gate = auth.middleware(
        cfg.api_key,
        control=cfg.control_routes,
        probes=VLLM_PROBES,
        denied=lambda: web.json_response({"error": "Unauthorized"}, status=401),
    )
    application = web.Application(middlewares=[auth.arrival, gate, errors], client_max_size=2_000_000)
    application.router.add_get("/health", r.health)
    application.router.add_get("/ping", r.health)
    application.router.add_post("/ping", r.health)
    application.router.add_get("/version", r.version)
    application.router.add_get("/metrics", r.metrics)
    application.router.add_post("/tokenize", r.tokenize)
    application.router.add_get("/v1/models", r.models)
    application.router.add_post("/v1/completions", r.completions)
    application.router.add_post("/v1/chat/completions", r.chat)
    if cfg.control:
        application.router.add_post("/_sim/stall", r.stall)
    if sim.power:
        power.add_routes(application, sim.power, cfg.api_key)
    return application
