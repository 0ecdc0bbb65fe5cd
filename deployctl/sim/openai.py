"""The simulator speaking vLLM's OpenAI-compatible API as vLLM 0.32.0 answers it.

Held to the real engine: tests/data/vllm/recorded-0.32.0.json is what vLLM's CPU build answered to the
requests of tests/helpers/conformance.py, and the conformance tests compare the simulator with it (and
with the live engine in tests/realengine). Sources, in vLLM 0.32.0's wheel: the key check
(entrypoints/serve/middleware/authenticate.py: only paths under /v1, /v2, /inference, /cohere),
request validation errors (entrypoints/serve/exception_handling/handlers/validation.py: type
"Bad Request", param the field's dotted path), vLLM's own errors (exceptions.py VLLMValidationError:
the message ends with " (parameter=X, value=Y)"), length checks (renderers/params.py), the system
fingerprint (entrypoints/serve/utils/fingerprint.py), and the chunk shapes as recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from typing import Any

from aiohttp import web

from deployctl.sim import auth, latency, power
from deployctl.sim.body import BadBody, read_object
from deployctl.sim.config import SimConfig
from deployctl.sim.metrics import Metrics
from deployctl.sim.server import HttpError, Request, Simulator, chat_text, errors, off_loop

# entrypoints/serve/middleware/authenticate.py GUARDED_PREFIX (0.32.0); OPTIONS is never checked.
GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")
COMPLETION_DEFAULT_MAX_TOKENS = 16  # entrypoints/openai/completion/protocol.py CompletionRequest.max_tokens
# What the tokenizers library says when a prompt holds a lone surrogate (vLLM passes it on as a 400).
SURROGATE_MESSAGE = "TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]"


class OpenAIError(HttpError):
    """vLLM's error envelope: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": status}}


class DetailError(HttpError):
    """FastAPI's own answer: {"detail": ...} (unknown paths, a body it cannot parse)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body = {"detail": detail}


def vllm_error(message: str, param: str | None, value: Any = None) -> OpenAIError:
    """Give vLLM's VLLMValidationError as answered: 400 BadRequestError, " (parameter=X, value=Y)" appended."""
    extras = [f"parameter={param}"] if param is not None else []
    if value is not None:
        extras.append(f"value={value}")
    return OpenAIError(400, f"{message} ({', '.join(extras)})" if extras else message, "BadRequestError", param)


def schema_error(field: str, kind: str, msg: str, given: Any) -> OpenAIError:
    """Give the answer to a request that does not fit vLLM's request model (pydantic), as its handler words it."""
    loc = f"body.{field}" if field else "body"
    # As vLLM's handler shows the input (validation.py _summarize_error_input): containers by their size.
    shown = f"<{type(given).__name__} of {len(given)} items>" if isinstance(given, list | dict) else str(given)[:200]
    text = f"1 validation error:\n  {{'type': '{kind}', 'loc': '{loc}', 'msg': '{msg}', 'input': {shown!r}}}"
    return OpenAIError(400, text, "Bad Request", loc)


def _body_error(exc: BadBody) -> HttpError:
    """Give the answer vLLM (FastAPI) gives to a body it cannot read."""
    if exc.kind == "syntax":
        text = (
            "1 validation error:\n  {'type': 'json_invalid', 'loc': 'body." + str(exc.position) + "', 'msg': "
            f"'JSON decode error', 'input': '<dict of 0 items>', 'ctx': {{'error': '{exc.detail}'}}}}"
        )
        return OpenAIError(400, text, "Bad Request", f"body.{exc.position}")
    if exc.kind == "type":
        return schema_error(
            "", "model_attributes_type", "Input should be a valid dictionary or object to extract fields from", []
        )
    if exc.kind == "text":
        return OpenAIError(400, SURROGATE_MESSAGE, "BadRequestError", None)
    if exc.kind == "timeout":
        return DetailError(408, exc.message)
    return DetailError(400, "There was an error parsing the body")  # fastapi/routing.py, any other failure


def lax_int(value: Any) -> int | None:
    """Give `value` as pydantic's lax mode reads an int (true is 1, "4" is 4), or None when it is not one."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


class VllmRoutes:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cfg: SimConfig = sim.cfg
        tp = f"-tp{self.cfg.num_shard}" if self.cfg.num_shard > 1 else ""
        digest = hashlib.sha256(f"{self.cfg.model_id}:{self.cfg.max_total_tokens}".encode()).hexdigest()[:8]
        self.fingerprint = f"vllm-{self.cfg.version}{tp}-{digest}"

    # -- open routes ---------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)  # vLLM exits when its engine dies: it never answers 503 for long

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": self.cfg.version})

    async def metrics(self, request: web.Request) -> web.Response:
        text = self.sim.metrics.render_vllm(self.cfg.model_id, self.cfg)
        return web.Response(text=text, content_type="text/plain")

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        prompt = body.get("prompt") if "prompt" in body else self._chat_prompt(body)
        if not isinstance(prompt, str):
            raise schema_error("prompt", "string_type", "Input should be a valid string", prompt)
        tokens = await off_loop(lambda t: [tok[0] for tok in latency.tokenize(t)], prompt)
        return web.json_response(
            {"count": len(tokens), "max_model_len": self.cfg.max_total_tokens, "tokens": tokens, "token_strs": None}
        )

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(lax_int(t) is not None for t in tokens):
            raise schema_error("tokens", "list_type", "Input should be a valid list", tokens or [])
        words = [latency.WORDS[lax_int(t) % len(latency.WORDS)] for t in tokens]  # type: ignore[operator]
        return web.json_response({"prompt": " ".join(words)})

    # -- guarded routes --------------------------------------------------------------------------------
    async def models(self, request: web.Request) -> web.Response:
        created = int(self.sim.started_wall)
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": created,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        card = {
            "id": self.cfg.model_id,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": self.cfg.model_path or self.cfg.model_id,
            "parent": None,
            "max_model_len": self.cfg.max_total_tokens,
            "permission": [permission],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._completion(request, await self._body(request))

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, await self._body(request))

    async def invocations(self, request: web.Request) -> web.StreamResponse:
        """SageMaker's route (entrypoints/sagemaker): chat when the body has messages, else a completion."""
        body = await self._body(request)
        return await (self._chat(request, body) if "messages" in body else self._completion(request, body))

    async def _completion(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if prompt is not None and not isinstance(prompt, str):
            raise schema_error("prompt", "string_type", "Input should be a valid string", prompt)
        if not prompt:
            raise vllm_error("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
        limit = self._max_tokens(body, "max_tokens", COMPLETION_DEFAULT_MAX_TOKENS)
        return await self._answer(request, body, prompt, limit, chat=False)

    async def _chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        limit = self._max_tokens(body, "max_completion_tokens", None)
        if limit is None:
            limit = self._max_tokens(body, "max_tokens", None)
        return await self._answer(request, body, self._chat_prompt(body), limit, chat=True)

    # -- the work --------------------------------------------------------------------------------------
    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            text = "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed"
            raise OpenAIError(400, text, "Bad Request", None)
        try:
            body = await read_object(request)
        except BadBody as exc:
            raise _body_error(exc) from None
        model = body.get("model")
        if model is not None and model != self.cfg.model_id:
            message = f"The model `{model}` does not exist. Valid aliases: {self.cfg.model_id}."
            raise OpenAIError(404, message, "NotFoundError", "model")
        return body

    @staticmethod
    def _max_tokens(body: dict[str, Any], field: str, default: int | None) -> int | None:
        if body.get(field) is None:
            return default
        value = lax_int(body[field])
        if value is None:
            raise schema_error(field, "int_parsing", "Input should be a valid integer", body[field])
        return value

    @staticmethod
    def _chat_prompt(body: dict[str, Any]) -> str:
        messages = body.get("messages")
        if messages is None:
            raise schema_error("messages", "missing", "Field required", body)
        if not isinstance(messages, list) or not messages:
            raise schema_error("messages", "list_type", "Input should be a valid list", messages)
        parts = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise schema_error("messages", "missing", "Field required", m if isinstance(m, dict) else {})
            try:
                parts.append(f"{m['role']}: {chat_text(m.get('content'))}")
            except ValueError:
                # vLLM validates parts with a pydantic iterator over its content-part types (one error per type).
                raise OpenAIError(400, "4 validation errors for ValidatorIterator", "BadRequestError", None) from None
        return "\n".join(parts) + "\nassistant:"

    async def _request(self, body: dict[str, Any], prompt: str, limit: int | None) -> Request:
        L = self.cfg.max_total_tokens
        if limit is not None and limit < 1:
            raise vllm_error(f"max_tokens must be at least 1, got {limit}.", "max_tokens", limit)
        if limit is not None and limit > L:
            raise vllm_error(
                f"max_tokens={limit} cannot be greater than max_model_len={L}. Please request fewer output tokens.",
                "max_tokens",
                limit,
            )
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise schema_error(
                "stream_options",
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
                options,
            )
        try:
            n_in = await off_loop(latency.count_tokens, prompt)
        except UnicodeEncodeError:
            raise OpenAIError(400, SURROGATE_MESSAGE, "BadRequestError", None) from None
        if n_in > L:
            # The tokenizer stops at L + 1 tokens, so vLLM can only say "at least" (renderers/params.py).
            raise vllm_error(
                f"This model's maximum context length is {L} tokens. However, your prompt contains at least "
                f"{L + 1} input tokens, which exceeds this limit even without any output tokens. Please reduce "
                "the length of the input prompt.",
                "input_tokens",
                L + 1,
            )
        seed = lax_int(body.get("seed")) if body.get("seed") is not None else None
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str)]
        room = L - n_in  # 0.32 shortens an answer that would pass max_model_len (get_max_tokens)
        natural = limit is None  # no limit: the "model" stops at its own end of sequence
        length = min(room, latency.natural_length(prompt, seed)) if limit is None else min(limit, room)
        return Request(prompt, n_in, max(length, 1), natural, seed, stop)

    def _head(self, rid: str, kind: str, created: int) -> dict[str, Any]:
        return {"id": rid, "object": kind, "created": created, "model": self.cfg.model_id}

    @staticmethod
    def _usage(req: Request, n: int) -> dict[str, int]:
        return {"prompt_tokens": req.input_tokens, "total_tokens": req.input_tokens + n, "completion_tokens": n}

    @staticmethod
    def _finish(reason: str) -> str:
        return "length" if reason == "length" else "stop"

    async def _answer(
        self, request: web.Request, body: dict[str, Any], prompt: str, limit: int | None, chat: bool
    ) -> web.StreamResponse:
        req = await self._request(body, prompt, limit)
        self.sim.admit()
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.get("stream") is True:
            # include_usage defaults to false (entrypoints/openai/engine/protocol.py StreamOptions).
            options = body.get("stream_options") or {}
            return await self._stream(request, req, rid, created, chat, options.get("include_usage") is True)
        start = time.monotonic()
        tokens: list[str] = []
        finish = "length"
        try:
            async for _, tok, reason in self.sim.tokens(req, request.get(auth.ARRIVED)):
                if reason != "eos_token":
                    tokens.append(tok[1])
                finish = reason or finish
        finally:
            self.sim.release(len(tokens), time.monotonic() - start, ok=True)
        self.sim.metrics.finished(req.input_tokens, len(tokens), self._finish(finish), limit)
        text = "".join(tokens)
        common = {"logprobs": None, "finish_reason": self._finish(finish), "stop_reason": None, "token_ids": None}
        if chat:
            message = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "reasoning": None,
            }
            choice: dict[str, Any] = {"index": 0, "message": message, **common, "routed_experts": None}
        else:
            choice = {"index": 0, "text": text, **common, "prompt_logprobs": None, "prompt_token_ids": None}
            choice["routed_experts"] = None
        usage = {**self._usage(req, len(tokens)), "prompt_tokens_details": None, "completion_tokens_details": None}
        answer = {
            **self._head(rid, "chat.completion" if chat else "text_completion", created),
            "choices": [choice],
            "service_tier": None,
            "system_fingerprint": self.fingerprint,
            "usage": usage,
            "kv_transfer_params": None,
            "ec_transfer_params": None,
            "metrics": None,
        }
        if chat:
            answer.update({"prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None})
        return web.json_response(answer)

    def _chunk(self, chat: bool, i: int, text: str, finish: str | None) -> dict[str, Any]:
        """Give one streamed choice as vLLM 0.32.0 sends it (the recorded shapes)."""
        if not chat:
            return {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
                "token_ids": None,
                "prompt_token_ids": None,
            }
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish}
        if finish:
            choice["stop_reason"] = None
        choice["token_ids"] = None
        return choice

    async def _stream(
        self, request: web.Request, req: Request, rid: str, created: int, chat: bool, include_usage: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        kind = "chat.completion.chunk" if chat else "text_completion"
        start, count = time.monotonic(), 0
        loop = asyncio.get_running_loop()
        arrived = previous = request.get(auth.ARRIVED, loop.time())
        finish = "length"
        try:
            if chat:  # the role first, with empty content and the prompt fields (entrypoints/openai/chat_completion)
                first = {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
                head = {
                    **self._head(rid, kind, created),
                    "choices": [first],
                    "prompt_token_ids": None,
                    "prompt_text": None,
                }
                await resp.write(sse(head))
            async for i, tok, reason in self.sim.tokens(req, request.get(auth.ARRIVED)):
                count += 1
                now = loop.time()
                if i == 0:
                    self.sim.metrics.ttft.observe(now - arrived)
                else:
                    self.sim.metrics.itl.observe(now - previous)
                previous = now
                text = "" if reason == "eos_token" else tok[1]
                done = self._finish(reason) if reason else None
                finish = done or finish
                event = {**self._head(rid, kind, created), "choices": [self._chunk(chat, i, text, done)]}
                if done and not include_usage:
                    event["system_fingerprint"] = self.fingerprint
                await resp.write(sse(event))
            if include_usage:
                usage = {**self._head(rid, kind, created), "choices": [], "system_fingerprint": self.fingerprint}
                usage["usage"] = self._usage(req, count)
                await resp.write(sse(usage))
            await resp.write(sse("[DONE]"))
        except (ConnectionResetError, asyncio.CancelledError):
            self.sim.release(count, time.monotonic() - start, ok=False)
            raise
        self.sim.release(count, time.monotonic() - start, ok=True)
        self.sim.metrics.finished(req.input_tokens, count, finish, None)
        return resp

    async def stall(self, request: web.Request) -> web.Response:
        try:
            seconds = float(request.query.get("seconds", "1"))
        except ValueError:
            raise DetailError(400, "`seconds` must be a number") from None
        if not 0 <= seconds <= 60:
            raise DetailError(400, "`seconds` must be between 0 and 60")
        self.sim.stall_until = asyncio.get_running_loop().time() + seconds
        return web.json_response({"stalled_for": seconds})


def sse(data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


@web.middleware
async def not_found(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer unknown paths and methods as FastAPI does: {"detail": "Not Found"} / "Method Not Allowed"."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPNotFound:
        return web.json_response({"detail": "Not Found"}, status=404)
    except web.HTTPMethodNotAllowed:
        return web.json_response({"detail": "Method Not Allowed"}, status=405)


def guarded(request: web.Request) -> bool:
    """Whether vLLM checks the key for this request: a path under a guarded prefix, any method but OPTIONS."""
    return request.method != "OPTIONS" and request.path.startswith(GUARDED_PREFIXES)


def app(cfg: SimConfig) -> web.Application:
    """Give the vLLM-dialect simulator's aiohttp application."""
    sim = Simulator(cfg)
    sim.metrics = Metrics(http=True, kv_capacity=cfg.kv_tokens)
    r = VllmRoutes(sim)
    gate = auth.middleware(
        cfg.api_key,
        control=cfg.control_routes,
        guarded=guarded,
        denied=lambda: web.json_response({"error": "Unauthorized"}, status=401),
    )
    middlewares = [auth.arrival, sim.metrics.http_middleware, gate, not_found, errors]
    application = web.Application(middlewares=middlewares, client_max_size=2_000_000)
    application.router.add_get("/health", r.health)
    application.router.add_get("/ping", r.health)
    application.router.add_post("/ping", r.health)
    application.router.add_get("/version", r.version)
    application.router.add_get("/metrics", r.metrics)
    application.router.add_post("/tokenize", r.tokenize)
    application.router.add_post("/detokenize", r.detokenize)
    application.router.add_post("/invocations", r.invocations)
    application.router.add_get("/v1/models", r.models)
    application.router.add_post("/v1/completions", r.completions)
    application.router.add_post("/v1/chat/completions", r.chat)
    if cfg.control:
        application.router.add_post("/_sim/stall", r.stall)
    if sim.power:
        power.add_routes(application, sim.power, cfg.api_key)
    return application
